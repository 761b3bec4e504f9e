"""A WSGI app that answers with this process's garbage-collector state (tests/test_gc_tuning.py).

``LOADED`` is built at import, before the server freezes what the app loaded; the answer says
whether the collector now sees it (``gc.get_objects()`` lists only tracked, unfrozen objects).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable
from typing import Any

LOADED = {"routes": ["/"]}  # a long-lived object of the app's own
# What the interpreter froze before the server could: CPython 3.12.1 starts with 375 objects
# in the permanent generation, 3.11 and 3.13 with none.
FROZEN_AT_IMPORT = gc.get_freeze_count()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    tracked = any(obj is LOADED for obj in gc.get_objects())
    body = json.dumps(
        {
            "frozen": gc.get_freeze_count(),
            "frozen_at_import": FROZEN_AT_IMPORT,
            "threshold": list(gc.get_threshold()),
            "loaded_tracked": tracked,
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
