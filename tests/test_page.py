"""The page at `/` in a real headless Chromium: type an input, submit, find the output and a drawn
attention heatmap. Set T2T_SCREENSHOT=path.png to keep the screenshot (README's picture)."""

import os
import shutil
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 't2t[test]')")
pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 't2t[serve]')")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from t2t.pipeline import load  # noqa: E402
from t2t.serve import ServeSettings, create_app  # noqa: E402
from t2t.serve.app import running_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not CHROMIUM or not DRIVER:
        pytest.skip("no Chromium and ChromeDriver on this machine (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1150"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_page_decodes_and_draws_attention(toy_transformer, browser, tmp_path):
    run, _ = toy_transformer
    app = create_app({"dates": load(run, device="cpu")}, ServeSettings())
    with running_server(app) as url:
        browser.get(url)
        wait = WebDriverWait(browser, 20)
        wait.until(lambda d: d.find_element(By.ID, "model").get_attribute("value") == "dates")
        assert "exact_match" in browser.find_element(By.ID, "card").text        # the run's test score
        box = browser.find_element(By.ID, "inputs")
        box.send_keys("July 4, 1998\n3 March 2001")
        browser.find_element(By.ID, "submit").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result .output")) == 2)
        outputs = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".result .output")]
        assert outputs == ["1998-07-04", "2001-03-03"]
        assert len(browser.find_elements(By.CSS_SELECTOR, ".result:first-child li.hyp")) == 3   # n-best 3
        wait.until(lambda d: d.find_element(By.ID, "heatmap").get_attribute("data-drawn") not in (None, ""))
        # the canvas holds coloured cells, not only white: read its pixels back
        coloured = browser.execute_script("""
            const c = document.getElementById('heatmap'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 200 && d[i + 2] > 200) n++; return n;""")
        assert coloured > 100
        shot = Path(os.environ.get("T2T_SCREENSHOT") or tmp_path / "page.png")
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        legend = browser.find_element(By.ID, "legend")
        assert legend.is_displayed() and "attention weight" in legend.text and "0" in legend.text
        status = browser.find_element(By.ID, "status").text
        assert "beam 3, 3-best" in status                      # the beam the n-best widened, said
        # a bad request shows the server's message, and the earlier results and status go
        browser.find_element(By.ID, "beam").send_keys("99")
        browser.find_element(By.ID, "submit").click()
        wait.until(lambda d: "beam" in d.find_element(By.ID, "error").text)
        assert "422" in browser.find_element(By.ID, "error").text
        assert not browser.find_elements(By.CSS_SELECTOR, ".result")
        assert not browser.find_element(By.ID, "attention").is_displayed()
        assert "refused" in browser.find_element(By.ID, "status").text


def test_page_fits_a_narrow_window(toy_transformer, browser):
    run, _ = toy_transformer
    app = create_app({"dates": load(run, device="cpu")}, ServeSettings())
    with running_server(app) as url:
        browser.set_window_size(420, 900)
        browser.get(url)
        wait = WebDriverWait(browser, 20)
        wait.until(lambda d: d.find_element(By.ID, "model").get_attribute("value") == "dates")
        width = browser.execute_script("return document.documentElement.clientWidth")
        for element in ("submit", "card", "inputs"):
            right = browser.execute_script(f"return document.getElementById('{element}').getBoundingClientRect().right")
            assert right <= width, (element, right, width)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width     # no sideways scroll
