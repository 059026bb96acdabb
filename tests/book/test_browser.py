"""The built book in headless Chromium: pages load, MathJax typesets, images and widgets work.

Screenshots of every page go to _build/screenshots/.
"""

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from book_pages import PAGES, ROOT

SHOTS = ROOT / "_build" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def load(browser, server, name):
    browser.get(f"{server}/{name}.html")
    WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.readyState") == "complete")


def wait_for_mathjax(browser):
    script = """
        const done = arguments[arguments.length - 1];
        if (!window.MathJax || !MathJax.startup) { done('MathJax did not load'); return; }
        MathJax.startup.promise.then(() => done('ok'), (e) => done('MathJax failed: ' + e));
    """
    browser.set_script_timeout(60)
    return browser.execute_async_script(script)


@pytest.mark.parametrize("name", PAGES)
def test_page_renders(browser, server, name):
    load(browser, server, name)
    assert browser.title, f"{name}: page has no title"
    assert wait_for_mathjax(browser) == "ok"
    counts = browser.execute_script(
        "return [document.querySelectorAll('mjx-container').length, document.querySelectorAll('mjx-merror').length]"
    )
    assert counts[0] > 0, f"{name}: no typeset math"
    assert counts[1] == 0, f"{name}: {counts[1]} MathJax errors"
    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))"
    )
    assert not broken, f"{name}: images that did not load: {broken}"
    body = browser.find_element("tag name", "body").text
    assert "Traceback" not in body
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height, 16000))  # the whole page in one screenshot
    browser.save_screenshot(str(SHOTS / f"{Path(name).name}.png"))


def test_static_widget_fallback_responds(browser, server):
    """The widget's Python callbacks cannot run here; the pre-rendered slider must."""
    browser.set_window_size(1280, 2000)
    load(browser, server, "book/attention_scaling")
    explorer = browser.find_element("css selector", ".labs-explorer")
    image = explorer.find_element("css selector", "img.labs-explorer-frame")
    slider = explorer.find_element("css selector", "input[data-control='0']")
    before = image.get_attribute("src")
    browser.execute_script(
        "arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'));", slider
    )
    assert image.get_attribute("src") != before
    assert slider.find_element("xpath", "following-sibling::output").text == "4"
    assert image.get_attribute("alt")
