"""The playground page in a real browser: Debian's chromium, driven by Playwright, with the
page's own Content-Security-Policy in force (so the test's probes poll with selectors, not
script strings, which the policy forbids).

Screenshots are saved as test artefacts in test-artifacts/ at the repository root.
"""

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect, sync_playwright

from rnnkit.api import load
from rnnkit.serve.app import create_app

from .test_serve import serving, slowed, trained_run

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# the flags this machine's closed network needs: no background requests to any other host
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium "
                                 "(apt-get install chromium)")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The playground for a tiny trained model; 4 ms per step, so a generation lasts long
    enough to be seen arriving."""
    model, vocab, meta = load(trained_run(tmp_path_factory))
    with serving(create_app(*slowed(model, vocab, meta, delay=0.004))) as url:
        yield url


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM),
            headless=True, args=FLAGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


@pytest.fixture
def page(browser_context, server):
    """A fresh tab on the playground; ``page.requests`` lists every URL it asked for."""
    tab = browser_context.new_page()
    tab.requests = []
    tab.on("request", lambda request: tab.requests.append(request.url))
    tab.goto(server + "/")
    tab.wait_for_selector("body[data-ready=true]")
    yield tab
    tab.close()


def screenshot(page, tmp_path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def assert_only_loopback(requests: list[str], server: str) -> None:
    assert requests, "the page made no request at all"
    origin = urlparse(server)
    for url in requests:
        parsed = urlparse(url)
        if parsed.scheme == "data":  # the inline icon: no request leaves the browser
            continue
        assert (parsed.scheme, parsed.hostname, parsed.port) == (
            "http", "127.0.0.1", origin.port), url


def generate(page, prompt: str, length: int) -> None:
    page.fill("#prompt", prompt)
    page.fill("#length", str(length))
    page.fill("#seed", "5")
    page.click("#generate")


def test_page_streams_text_coloured_by_probability(page, server, tmp_path):
    assert page.inner_text("#model-info").startswith("1 x 64 LSTM")
    generate(page, "Ber", 500)
    # the first characters show while the generation still runs (500 steps take >= 2 s)
    page.wait_for_selector("#output span.ch")
    partial = page.locator("#output span.ch").count()
    assert page.is_enabled("#stop") and 0 < partial < 500
    expect(page.locator("#status")).to_contain_text("500 characters in", timeout=60_000)
    spans = page.locator("#output span.ch")
    assert spans.count() == 500
    assert page.inner_text("#output").startswith("Ber")
    # every generated character has a probability colour and its alternatives as a tooltip
    details = page.eval_on_selector_all("#output span.ch", """spans => spans.map(s => ({
        p: Number(s.dataset.prob), bg: s.style.backgroundColor, title: s.title}))""")
    assert all(0 < d["p"] <= 1 and d["bg"].startswith("rgb") for d in details)
    assert all(d["title"].startswith('"') and len(d["title"].splitlines()) == 6 for d in details)
    assert len({d["bg"] for d in details}) > 10  # the colours follow the probabilities
    spans.nth(10).hover()
    tip = page.locator("#tip")
    assert tip.is_visible() and "p=" in tip.inner_text()
    screenshot(page, tmp_path, "playground_probabilities.png")
    assert_only_loopback(page.requests, server)


def test_hidden_unit_view_colours_the_text(page, server, tmp_path):
    generate(page, "Ber", 120)
    expect(page.locator("#status")).to_contain_text("120 characters in", timeout=60_000)
    text = page.inner_text("#output")
    page.select_option("#layer", "0")
    page.select_option("#state", "c")
    page.fill("#unit", "7")
    page.click("#show-unit")
    page.wait_for_selector("#unit-text span.act")
    acts = page.eval_on_selector_all("#unit-text span.act", """spans => spans.map(s => ({
        c: s.textContent, bg: s.style.backgroundColor, title: s.title}))""")
    assert "".join(a["c"] for a in acts) == text  # one span per character, prompt included
    assert all(a["bg"].startswith("rgba") and a["title"].startswith("activation") for a in acts)
    assert page.inner_text("#unit-label") == "layer 0, c, unit 7"
    # let rnnkit pick the unit that tracks letters best
    page.select_option("#feature", "in_word")
    page.click("#rank")
    page.wait_for_selector("#ranking li")
    assert page.locator("#ranking li").count() == 10
    best = page.locator("#ranking li").first.get_attribute("data-unit")
    expect(page.locator("#ranking li.selected")).to_have_attribute("data-unit", best)
    layer, state, unit = best.split("/")
    assert page.inner_text("#unit-label") == f"layer {layer}, {state}, unit {unit}"
    screenshot(page, tmp_path, "playground_hidden_units.png")
    assert_only_loopback(page.requests, server)


def test_bad_input_shows_the_servers_message(page, server):
    generate(page, "Ber \u00e9t\u00e9", 10)
    page.wait_for_selector("#status.error")
    assert "outside the model's vocabulary" in page.inner_text("#status")
    assert page.locator("#output span.ch").count() == 0
