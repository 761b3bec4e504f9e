"""Sizes and durations as people write them on a command line: ``10M``, ``512K``, ``1.5``.

Sizes use binary units, as nginx's ``client_max_body_size 10m`` does: ``K`` is 1024 bytes,
``M`` 1024 K, ``G`` 1024 M.  ``KB``/``KiB`` and lower case are accepted too; a plain number is
bytes.  Durations are seconds, as uvicorn's and gunicorn's timeouts are; a float is fine.
``none`` (or an empty value) means "no limit" where the option allows it.
"""

from __future__ import annotations

import argparse
import math
import re

__all__ = ["parse_duration", "parse_optional_duration", "parse_optional_size", "parse_size"]

_MULTIPLIERS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"10M"`` -> 10485760; ``"512K"`` -> 524288; ``"1G"``; ``"4096"`` -> 4096 bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4096, 512K, 10M or 1G (binary units), not {text!r}"
        )
    number, unit = match.groups()
    size = float(number) * _MULTIPLIERS[unit.lower()]
    if size != int(size):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes")
    return int(size)


def parse_optional_size(text: str) -> int | None:
    return None if text.strip().lower() in ("none", "") else parse_size(text)


def parse_duration(text: str) -> float:
    """Seconds: ``"30"``, ``"0.5"``."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds such as 30 or 0.5, not {text!r}"
        ) from None
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, not {text!r}")
    return seconds


def parse_optional_duration(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "") else parse_duration(text)
