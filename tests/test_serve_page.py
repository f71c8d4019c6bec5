"""The page at / in a real headless Chromium (Debian's, driven by Playwright): upload the cat, read the label.

Needs `apt-get install chromium` and `pip install playwright` (never `playwright install`: it downloads).
The screenshot goes to a temporary file; docs/img/serve-page.png is renewed with
`EDGEWASM_SCREENSHOT=docs/img/serve-page.png python -m pytest tests/test_serve_page.py` (a test run never writes
into the checkout).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._model_fixtures import model_store  # noqa: F401
from tests._serve_support import CAT, ROOT, WASM, Server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[Server]:  # noqa: F811
    args = [
        "--task",
        "classifier=image-classification",
        f"classifier={WASM / 'classifier.wasm'}",
        f"echo={WASM / 'echo.wat'}",
    ]
    srv = Server(args, cache_dir=tmp_path_factory.mktemp("c"), env={"EDGEWASM_MODELS": str(model_store)})
    srv.start()
    yield srv
    assert srv.stop() == 0


def test_page_classifies_the_cat_in_chromium(server: Server, tmp_path: Path) -> None:
    shot = os.environ.get("EDGEWASM_SCREENSHOT")
    screenshot = ROOT / shot if shot else tmp_path / "serve-page.png"
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 820, "height": 900})
            external: list[str] = []
            local = (server.url, "blob:", "data:")  # the preview is a blob: URL of the chosen file
            page.on("request", lambda r: None if r.url.startswith(local) else external.append(r.url))
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('server-state').textContent === 'ready'")
            # Only classifiers are offered.
            assert page.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == ["classifier"]
            page.set_input_files("#file", str(CAT))
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            label = page.text_content("#label")
            assert label in ("tiger cat", "tabby, tabby cat", "Egyptian cat")
            bars = page.eval_on_selector_all(".bar .name", "els => els.map(e => e.textContent)")
            assert len(bars) == 5 and bars[0] == label
            stages = page.eval_on_selector_all("#stages tbody td:first-child", "els => els.map(e => e.textContent)")
            assert {"decode", "preprocess", "inference", "postprocess"} <= set(stages)
            assert page.is_hidden("#error")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            # A file that is not an image: the guest's error, shown on the page.
            bad = tmp_path / "not-an-image.jpg"
            bad.write_bytes(b"this is not a JPEG")
            page.set_input_files("#file", str(bad))
            page.wait_for_selector("#error:not([hidden])")
            assert "422 decode" in (page.text_content("#error") or "")
            assert external == []  # nothing fetched from anywhere else: the page works offline
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
