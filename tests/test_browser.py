"""The page in a real browser (Playwright driving Debian's chromium): drop a real BIOSCAN photo, paste a
barcode, wait for the answer, open the map; screenshots go to docs/screenshots/ (shown in the README)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from clibd_core.workspace import DEMO_LIBRARY

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not (DEMO_LIBRARY / "CURRENT").exists(), reason="reference_db/ is not built"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_identify_a_dropped_photo_and_a_pasted_barcode_then_explore(browser, app_url, home, photo_dir):
    (home / "active.json").unlink(missing_ok=True)  # new sessions start on the demo pair
    photo = sorted(photo_dir.glob("BIOUG*.jpg"))[0]
    barcode = pd.read_parquet(DEMO_LIBRARY.parent / "demo_queries.parquet")["barcode"].iloc[0]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url)
    page.get_by_text("synthetic demo world, not real insects").wait_for(timeout=60_000)
    page.get_by_role("button", name="Identify", exact=True).wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.get_by_text(photo.name).first.wait_for(timeout=90_000)  # the upload landed
    page.get_by_label("Barcodes (raw or FASTA)").fill(barcode)
    page.get_by_role("button", name="Identify", exact=True).click()
    page.get_by_text("Ranks are stated down to the deepest").wait_for(timeout=60_000)
    assert page.get_by_text("Image and barcode:").count() >= 1  # one specimen, both modalities
    assert page.get_by_text("nearest references").count() >= 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "identify.png"), full_page=True)

    page.get_by_role("tab", name="Explore").click()
    page.get_by_role("button", name="Draw map").click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    page.locator(".js-plotly-plot .legendtext", has_text="query").first.wait_for(timeout=30_000)  # the star
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SCREENSHOTS / "explore.png"), full_page=True)

    for tab in ("Train", "Libraries"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(SCREENSHOTS / f"{tab.lower()}.png"), full_page=True)
    page.close()
