"""The dashboard in a real browser: ``decodex app``'s Streamlit server started headless on
localhost, Debian's Chromium driven by Selenium (``/usr/bin/chromium`` and
``/usr/bin/chromedriver``, nothing downloaded). Every page is opened, checked for its title and
for the absence of an exception, and saved as a screenshot; on the Design point page a widget is
changed and the value shown is checked against ``sim.estimate`` for the same point.

Skipped where Chromium or Selenium is missing, unless ``DECODEX_BROWSER_TESTS=1`` (set by
``.ci/run``, which installs them): then their absence fails. Screenshots go to
``$DECODEX_TEST_OUTPUT/browser`` (default: pytest's temporary directory)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from decodex.app.cli_app import streamlit_command
from decodex.examples import example_path
from decodex.sim.auto_layout import choose_layout
from decodex.sim.estimate import estimate

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRED = os.environ.get("DECODEX_BROWSER_TESTS") == "1"
PAGE_TIMEOUT_S = 120.0

# url path, title shown as the page's h1
PAGES = [("", "Design point"), ("timeline", "Timeline"), ("serving", "Serving"), ("systems", "Systems compared"),
         ("speculative", "Speculative decoding"),
         ("sweeps", "Sweep explorer"), ("validation", "Validation")]


def _missing() -> str:
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        return f"{CHROMIUM} or {CHROMEDRIVER} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return ""


if _missing():
    if REQUIRED:
        pytest.fail(f"DECODEX_BROWSER_TESTS=1 but {_missing()}", pytrace=False)
    pytest.skip(_missing(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # the page is re-rendering: elements come and go
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(streamlit_command(port, "127.0.0.1"), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip() == "ok"

    try:
        _wait(healthy, 90, "the Streamlit server's health check")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1600,1200", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("DECODEX_TEST_OUTPUT")
    out = Path(root) / "browser" if root else tmp_path_factory.mktemp("browser")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _idle(driver: WebDriver) -> bool:
    """The app's script has finished its run (Streamlit marks the root ``notRunning``) and every
    Plotly chart on the page has drawn its SVG."""
    app = driver.find_element(By.CSS_SELECTOR, '[data-testid="stApp"]')
    if app.get_attribute("data-test-script-state") != "notRunning":
        return False
    charts = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')
    return all(chart.find_elements(By.CSS_SELECTOR, "svg.main-svg") for chart in charts)


def _title_shown(driver: WebDriver, title: str) -> bool:
    return any(h.text.strip() == title for h in driver.find_elements(By.TAG_NAME, "h1")) and _idle(driver)


def _metric(driver: WebDriver, label: str) -> str:
    for metric in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
        if metric.find_element(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]').text.strip() == label:
            return metric.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]').text.strip()
    raise LookupError(label)


@pytest.mark.parametrize(("path", "title"), PAGES)
def test_every_page_renders(server: str, browser: WebDriver, shots: Path, path: str, title: str) -> None:
    browser.get(f"{server}/{path}")
    _wait(lambda: _title_shown(browser, title), PAGE_TIMEOUT_S, f"the {title!r} page")
    errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not errors, f"{title}: {errors[0].text[:500]}"
    browser.save_screenshot(str(shots / f"{path or 'design-point'}.png"))


def test_design_point_widget_changes_the_shown_value(server: str, browser: WebDriver, shots: Path) -> None:
    browser.get(server)
    _wait(lambda: _title_shown(browser, "Design point") and bool(_metric(browser, "Output tokens/s")),
          PAGE_TIMEOUT_S, "the Design point metrics")
    before = _metric(browser, "Output tokens/s")
    batch = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Batch (requests)"]')
    batch.send_keys(Keys.CONTROL, "a")
    batch.send_keys("128", Keys.ENTER)
    layout = choose_layout("llama3-70b", "h100-sxm", 128, context=2048).parallelism  # auto layout, the default
    expected = estimate("llama3-70b", "h100-sxm", 128, context=2048, parallelism=layout)
    shown = f"{expected.tokens_per_s:,.0f}"
    _wait(lambda: _metric(browser, "Output tokens/s") == shown and _idle(browser), PAGE_TIMEOUT_S,
          f"Output tokens/s = {shown} after batch 128 (was {before})")
    assert before != shown
    browser.save_screenshot(str(shots / "design-point-batch-128.png"))


def test_sweep_explorer_runs_the_example_in_the_browser(server: str, browser: WebDriver, shots: Path) -> None:
    from decodex.explore.runner import run_sweep

    browser.get(f"{server}/sweeps")
    _wait(lambda: _title_shown(browser, "Sweep explorer"), PAGE_TIMEOUT_S, "the Sweep explorer page")
    button = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.startswith("Run "))
    button.click()
    rows = run_sweep(example_path("h100-batch-context"), progress=False)
    feasible = int(rows["feasible"].sum())
    _wait(lambda: _metric(browser, "Points") == f"{len(rows):,}" and _idle(browser), PAGE_TIMEOUT_S,
          f"Points = {len(rows)} after the run")
    assert _metric(browser, "Feasible") == f"{feasible:,}"
    assert int(_metric(browser, "Pareto-optimal").replace(",", "")) >= 1
    browser.save_screenshot(str(shots / "sweeps-after-run.png"))
    # the front's axes name the metrics with their units on the ticks, never a raw column name
    chart = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')[0]
    browser.execute_script("arguments[0].scrollIntoView();", chart)
    titles = [t.text for t in chart.find_elements(By.CSS_SELECTOR, "text.xtitle, text.ytitle")]
    assert titles == ["throughput per device", "TPOT"], titles
    ticks = [t.text for t in chart.find_elements(By.CSS_SELECTOR, "g.ytick text")]
    assert ticks and all(t.endswith("s") for t in ticks), ticks
    browser.save_screenshot(str(shots / "sweeps-pareto-front.png"))


def test_serving_page_takes_an_uploaded_model(server: str, browser: WebDriver, shots: Path) -> None:
    """An HF config.json uploaded in the Serving page's sidebar replaces the chosen model: the
    throughput shown is that of ``serve`` on the same file."""
    from decodex.app.dashboard.serving_charts import ServingPoint
    from decodex.app.formatting import compact
    from decodex.workloads.catalog import CATALOG_DIR, load_model

    browser.get(f"{server}/serving")
    _wait(lambda: _title_shown(browser, "Serving") and bool(_metric(browser, "Throughput (tokens/s)")), PAGE_TIMEOUT_S,
          "the Serving metrics")
    path = CATALOG_DIR / "llama3-8b.json"
    browser.find_elements(By.CSS_SELECTOR, 'input[type="file"]')[0].send_keys(str(path))
    layout = choose_layout(load_model(path), "h100-sxm", 1, context=2048).parallelism  # the page's auto layout
    expected = ServingPoint(model=path.name, model_text=path.read_text(), tp=layout.tp, pp=layout.pp).run()
    shown = compact(expected.throughput_tokens_per_s)
    _wait(lambda: _metric(browser, "Throughput (tokens/s)") == shown and _idle(browser), PAGE_TIMEOUT_S,
          f"Throughput = {shown} after uploading {path.name}")
    assert any("llama3-8b.json on h100-sxm" in c.text
               for c in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stCaptionContainer"]'))
    browser.save_screenshot(str(shots / "serving-uploaded-model.png"))


def test_validation_page_shows_the_gpu_decode_steps(server: str, browser: WebDriver, shots: Path) -> None:
    browser.get(f"{server}/validation")
    _wait(lambda: _title_shown(browser, "Validation"), PAGE_TIMEOUT_S, "the Validation page")
    headings = browser.find_elements(By.TAG_NAME, "h3")
    heading = next(h for h in headings if h.text.strip() == "Decode steps on a real GPU")
    browser.execute_script("arguments[0].scrollIntoView();", heading)
    assert _metric(browser, "Points") == "20"
    assert float(_metric(browser, "Step MAPE").rstrip(" %")) <= 15.0
    browser.save_screenshot(str(shots / "validation-gpu-decode-steps.png"))


def test_walkthrough_bandwidth_upload(server: str, browser: WebDriver, shots: Path) -> None:
    """The README's first what-if on the dashboard: the Design point page's default point, then the
    example device with twice the HBM bandwidth uploaded; the tile shows what the CLI's --set gives."""
    layout = choose_layout("llama3-70b", "h100-sxm", 64, context=2048).parallelism
    device = example_path("h100-2x-hbm")  # equals the CLI's --set hbm.bandwidth@scale=2 (tests/test_walkthrough.py)
    expected = estimate("llama3-70b", device, 64, context=2048, parallelism=layout).step_time_s
    browser.get(server)
    _wait(lambda: _title_shown(browser, "Design point") and bool(_metric(browser, "Step time")), PAGE_TIMEOUT_S,
          "the Design point metrics")
    browser.find_elements(By.CSS_SELECTOR, 'input[type="file"]')[1].send_keys(str(device))
    shown = f"{expected * 1e3:.3f} ms"
    _wait(lambda: _metric(browser, "Step time") == shown and _idle(browser), PAGE_TIMEOUT_S,
          f"Step time = {shown} after uploading h100-2x-hbm.toml")
    browser.save_screenshot(str(shots / "walkthrough-bandwidth.png"))
