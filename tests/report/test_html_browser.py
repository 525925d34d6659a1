"""report.html in a real browser: headless Chromium (Debian's) through Playwright, file:// URL.

The page must render with no console or page errors, load every image, fetch nothing beyond
itself, run no script from model outputs, and show its tables and plots on screen.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftrisk.report.html import write_report
from tests.report.test_html import (
    ATTACK,
    MALICIOUS,
    PNG,
    enrich,
    run_tiny_audit,
    set_first_response,
    write_sweep,
)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH = 1280

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_chromium.sh (installs Debian's "
                    "chromium) before the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def render(browser: Any, html: Path) -> dict[str, Any]:
    """Open ``html`` by file:// URL; return what the page did and showed."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.as_uri(), wait_until="load")
    seen = page.evaluate("""() => ({
        images: Array.from(document.images, i => [i.complete, i.naturalWidth, i.alt]),
        headers: Array.from(document.querySelectorAll('th'), th => th.textContent),
        tables: document.querySelectorAll('table').length,
        scripts: document.scripts.length,
        text: document.body.innerText,
    })""")
    seen.update(problems=problems, requests=requests, screenshot=page.screenshot(full_page=True))
    page.close()
    return seen


def check_screenshot(png: bytes, min_height: int) -> None:
    """A full-page PNG of the viewport's width, tall, with real content (not one flat colour)."""
    from PIL import Image

    assert png.startswith(PNG) and len(png) > 50_000
    image = Image.open(io.BytesIO(png))
    assert image.width == WIDTH and image.height >= min_height
    grey = image.convert("L")
    low, high = grey.getextrema()
    assert high - low > 200  # dark text on a light page
    assert len(grey.getcolors(maxcolors=256) or range(257)) > 20


@pytest.fixture(scope="module")
def audit_report(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = run_tiny_audit(tmp_path_factory.mktemp("audit"), tiny_model_dir)
    enrich(run_dir)
    set_first_response(run_dir, "lookalike", MALICIOUS)
    return write_report(run_dir)


def test_audit_report_renders_in_chromium(browser, audit_report):
    seen = render(browser, audit_report)
    assert seen["problems"] == []
    # Only the page and its data: URIs were fetched; nothing from a network.
    assert {url.split(":", 1)[0] for url in seen["requests"]} <= {"file", "data"}
    assert len(seen["images"]) == 4
    assert all(complete and width > 0 for complete, width, _ in seen["images"])
    for header in ("condition", "refusal (95% CI)", "category (refusal)",
                   "harmfulness score (95% CI)", "Cohen's kappa", "mmlu accuracy (95% CI)",
                   "paper", "verdict"):
        assert header in seen["headers"]
    assert seen["tables"] >= 8
    # The malicious answer is shown as text and never runs.
    assert seen["scripts"] == 0 and "<script>alert(1)</script>" in seen["text"]
    assert ATTACK in seen["text"]
    check_screenshot(seen["screenshot"], min_height=3000)


def test_sweep_report_renders_in_chromium(browser, tmp_path):
    seen = render(browser, write_report(write_sweep(tmp_path)))
    assert seen["problems"] == []
    assert {url.split(":", 1)[0] for url in seen["requests"]} <= {"file", "data"}
    assert [alt for *_, alt in seen["images"]] == [
        "Refusal rate (95% CI) against each budget axis, with the threshold (dashed) and the "
        "untuned model (dotted)",
        "Refusal rate against accuracy per cell (95% CI)",
        "Objective per trial; feasible and infeasible trials marked apart"]
    assert all(complete and width > 0 for complete, width, _ in seen["images"])
    for header in ("cell", "data.limit", "refusal (95% CI)", "budget axis", "trial"):
        assert header in seen["headers"]
    assert "CUDA out of memory <b>(simulated)</b>" in seen["text"]
    check_screenshot(seen["screenshot"], min_height=2000)
