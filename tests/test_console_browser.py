"""The console in a real browser: headless Chromium driven by Selenium.

Loads every page, fills the Configure form with a bad value and sees the error beside the
field, saves a tiny config, starts a tiny walk-forward run from the Run page and watches it
finish, opens its report, compares it, and presses Halt / Resume on a real trader API (and
sees the state change), while a supervisor headline carrying ``<script>`` and ``<img
onerror>`` stays inert. Screenshots go to ``tests/artifacts/console/`` (git-ignored; the
path is printed). Skips only when no Chromium / chromedriver is installed
(``scripts/run_tests.sh`` installs them where it can).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import (
    CONSOLE_TOKEN,
    SUPERVISOR_TOKEN,
    TRADER_TOKEN,
    build_live_stack,
)
from loopback import serve

from backend.api.console import ConsoleSettings, create_app

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts" / "console"
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
)
TINY_FORM = {
    "walk_forward.train_sessions": "12",
    "walk_forward.test_sessions": "3",
    "walk_forward.max_windows": "2",
    "training.total_timesteps": "150",
    "training.learning_starts": "50",
    "training.batch_size": "16",
    "training.buffer_size": "1000",
    "training.eval_every_steps": "75",
}
"""Values typed into the Configure form: the tests' tiny walk-forward run (seconds a job)."""


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "no headless browser: install the Debian packages chromium and chromium-driver "
            "(scripts/run_tests.sh does when run as root)"
        )
    pytest.importorskip("selenium", reason="selenium is a dev dependency: pip install -e .[dev]")
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {ARTIFACTS}")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A synthetic store, a trader API, a supervisor API and the console, all on loopback."""
    from backend.data_download.synthetic_market import (
        SyntheticMarketConfig,
        write_synthetic_market,
    )

    root = tmp_path_factory.mktemp("console")
    write_synthetic_market(
        root / "store", SyntheticMarketConfig(start="2024-01-02", end=None, n_sessions=40, seed=11)
    )
    (root / "work").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        live = build_live_stack(root, mp.setenv)
        with serve(live.trader_app) as trader_url, serve(live.supervisor_app) as sup_url:
            settings = ConsoleSettings(
                output_root=root / "runs",
                workdir=root / "work",
                token=CONSOLE_TOKEN,
                trader_url=trader_url,
                supervisor_url=sup_url,
                trader_token=TRADER_TOKEN,
                supervisor_token=SUPERVISOR_TOKEN,
                run_env={"PYTHONPATH": str(REPO)},
            )
            app = create_app(settings)
            with serve(app) as url:
                try:
                    yield {"url": url, "root": root, "live": live, "app": app}
                finally:
                    app.state.runs.stop_all()


def _shot(driver: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def _set(driver: Any, element_id: str, text: str) -> None:
    el = _by_id(driver, element_id)
    el.clear()
    el.send_keys(text)


def _error_for(driver: Any, path: str) -> str:
    from selenium.webdriver.common.by import By

    el = driver.find_element(By.CSS_SELECTOR, f'[data-error-for="{path}"]')
    return str(el.text)


def _no_injection(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        raise AssertionError(f"an alert ran: {text!r}")
    except NoAlertPresentException:
        pass
    assert driver.execute_script("return window.__xss === undefined"), "injected script ran"
    injected = driver.execute_script(
        'return document.querySelectorAll(\'main script, main img[src="x"], '
        'main img[src="y"], main b\').length'
    )
    assert injected == 0, "markup from untrusted text became DOM elements"


def _severe_console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _use_token(driver: Any) -> None:
    _set(driver, "token", CONSOLE_TOKEN)
    _by_id(driver, "token-save").click()
    _wait(lambda: "token set" in _by_id(driver, "token-state").text, 5, "the token to be kept")


def test_every_page_loads_without_script_errors(browser, stack):
    url = stack["url"]
    for path, heading in [
        ("/", "YoopRL console"),
        ("/configure", "Configure"),
        ("/runs", "Run"),
        ("/results", "Results"),
        ("/compare", "Compare two runs"),
        ("/live", "Live"),
    ]:
        browser.get(url + path)
        from selenium.webdriver.common.by import By

        assert browser.find_element(By.TAG_NAME, "h1").text == heading
        name = "page_index" if path == "/" else f"page_{path.strip('/')}"
        _shot(browser, name)
        assert _severe_console_errors(browser) == [], path


def test_configure_shows_the_error_beside_the_field_and_saves_yaml(browser, stack):
    browser.get(stack["url"] + "/configure")
    _use_token(browser)
    _set(browser, "f-training.total_timesteps", "not-a-number")
    _by_id(browser, "validate").click()
    message = _wait(
        lambda: _error_for(browser, "training.total_timesteps"), 10, "the field's error"
    )
    assert "valid integer" in message
    assert "invalid" in _by_id(browser, "f-training.total_timesteps").get_attribute("class")
    _shot(browser, "configure_bad_value")

    for field, value in TINY_FORM.items():
        _set(browser, f"f-{field}", value)
    _by_id(browser, "validate").click()
    _wait(lambda: _by_id(browser, "config-status").text == "valid", 10, "a valid config")
    assert _error_for(browser, "training.total_timesteps") == ""
    assert "total_timesteps: 150" in _by_id(browser, "resolved").text
    _set(browser, "config-name", "tiny")
    _by_id(browser, "save").click()
    _wait(lambda: "saved tiny.yaml" in _by_id(browser, "config-status").text, 10, "the save")
    saved = (stack["root"] / "runs" / "configs" / "tiny.yaml").read_text()
    assert "total_timesteps: 150" in saved and "train_sessions: 12" in saved
    _shot(browser, "configure_saved")


def test_start_a_tiny_run_and_watch_it_finish(browser, stack):
    from selenium.webdriver.support.ui import Select

    if not (stack["root"] / "runs" / "configs" / "tiny.yaml").is_file():
        pytest.skip("needs the config saved by the Configure test")
    browser.get(stack["url"] + "/runs")
    _use_token(browser)
    Select(_by_id(browser, "run-config")).select_by_value("tiny")
    _set(browser, "run-encoders", "manual")
    _set(browser, "run-data-dir", str(stack["root"] / "store"))
    _set(browser, "run-name", "tiny-run")
    _by_id(browser, "run-start").click()

    from selenium.webdriver.common.by import By

    def row_text(cls: str) -> str:
        try:
            row = browser.find_element(By.CSS_SELECTOR, 'tr[data-run="tiny-run"]')
            return str(row.find_element(By.CLASS_NAME, cls).text)
        except Exception:  # the page reloads after the start
            return ""

    _wait(lambda: row_text("run-status") == "running", 20, "the run to show as running")
    _shot(browser, "run_started")
    _wait(lambda: row_text("run-jobs").startswith("1 /"), 90, "the first job to finish")
    _shot(browser, "run_progress")
    status = _wait(
        lambda: row_text("run-status") if row_text("run-status") not in ("running", "") else "",
        120,
        "the run to end",
    )
    log = _by_id(browser, "run-log").text
    assert status == "finished", f"run ended {status}: {log}"
    assert row_text("run-jobs") == "2 / 2"
    assert "report:" in log
    _shot(browser, "run_finished")

    browser.get(stack["url"] + "/results/tiny-run")
    images = browser.find_elements(By.CSS_SELECTOR, "#report img")
    assert images, "the report shows its plots"
    assert all(
        browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images
    ), "every plot loads"
    assert browser.find_elements(By.CSS_SELECTOR, "table.tests tbody tr") or (
        "No tests" in browser.page_source
    )
    _shot(browser, "results_report")

    browser.get(stack["url"] + "/compare?a=tiny-run&b=tiny-run")
    assert browser.find_element(By.ID, "compare-table").is_displayed()
    _shot(browser, "compare")


def test_halt_and_resume_a_trader_while_hostile_text_stays_inert(browser, stack):
    from selenium.webdriver.common.by import By

    store = stack["live"].store
    browser.get(stack["url"] + "/live")
    _no_injection(browser)
    headlines = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".decision-headline")]
    assert any("market-wide trading halt" in h for h in headlines), headlines
    assert _by_id(browser, "supervisor-level").text == "Halt"
    assert _by_id(browser, "trader-halt").text == "off"
    _shot(browser, "live_before_halt")

    _use_token(browser)
    _set(browser, "live-reason", '<img src="y" onerror="window.__xss=4"> drill')
    _by_id(browser, "trader-halt-btn").click()
    _wait(lambda: _by_id(browser, "trader-halt").text.startswith("ACTIVE"), 15, "the trader halted")
    assert store.get("manual_halt")["active"] is True
    assert 'onerror="window.__xss=4"' in _by_id(browser, "trader-halt").text  # shown as text
    _no_injection(browser)
    _shot(browser, "live_halted")

    _by_id(browser, "trader-resume-btn").click()
    _wait(lambda: _by_id(browser, "trader-halt").text == "off", 15, "the trader resumed")
    assert store.get("manual_halt")["active"] is False
    assert int(store.get("resume_seq")) == 1
    _shot(browser, "live_resumed")


def test_controls_refuse_a_page_without_the_token(browser, stack):
    browser.get(stack["url"] + "/live")
    browser.execute_script("sessionStorage.clear()")
    _by_id(browser, "trader-halt-btn").click()
    _wait(lambda: "401" in _by_id(browser, "live-result").text, 10, "the refusal")
    assert stack["live"].store.get("manual_halt")["active"] is False
