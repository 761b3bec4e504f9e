"""A real browser loads a page whose CSS and JavaScript come from ``--static``.

The script runs after the stylesheet applies, reads the colour the CSS gave the probe and writes
it into the page; headless Chromium's ``--dump-dom`` shows the DOM after the script ran, so the
test sees both files arrive and work in a browser, with their Content-Type and encoding.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_dualcorn

pytestmark = pytest.mark.timeout(120)

CSS = b"#probe { color: rgb(1, 2, 3); }\n"
JS = b"""
const probe = document.getElementById("probe");
const color = getComputedStyle(probe).color;
document.getElementById("out").textContent = "script ran; css color " + color;
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium installed (apt-get install chromium)")


@pytest.mark.parametrize("precompressed", [False, True])
def test_browser_loads_css_and_js_from_static(tmp_path: Path, precompressed: bool) -> None:
    browser = _chromium()
    static = tmp_path / "static"
    static.mkdir()
    (static / "site.css").write_bytes(CSS)
    (static / "site.js").write_bytes(JS)
    if precompressed:  # the browser asks for gzip and must decode the .gz siblings
        (static / "site.css.gz").write_bytes(gzip.compress(CSS))
        (static / "site.js.gz").write_bytes(gzip.compress(JS))
    args = ("tests.apps.mount_page:app", "--port", "0", "--static", f"/static={static}")
    with run_dualcorn(*args) as server:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
            "--dump-dom", server.url + "/",
        ]  # fmt: skip
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert "script ran; css color rgb(1, 2, 3)" in done.stdout, done.stdout + done.stderr
        server.stop(timeout=30)
    log = server.stderr_text()
    for name in ("site.css", "site.js"):
        # The access line's byte count shows which file went out: the .gz when precompressed.
        sent = static / (name + ".gz" if precompressed else name)
        assert f'"GET /static/{name} HTTP/1.1" 200 {sent.stat().st_size} ' in log, log
