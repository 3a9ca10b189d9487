"""The main journey in a real browser, asserting on what a person sees: register the
seed data, start a study of 4 trials, watch it finish and the history chart draw,
compare two runs, register the best, predict from the Models page. Screenshots of
every page go to tests/e2e/screenshots/."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SEED

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STUDY_TIMEOUT_MS = 240_000
PREDICT_TIMEOUT_MS = 240_000  # the registry loads torch and the model on the first prediction
CHART_POINTS = """(cls) => {
  const el = document.querySelector('.' + cls);
  if (!el) return -1;
  const chart = getElement(el.id.replace(/^c/, '')).chart;
  const option = chart && chart.getOption();
  return option && option.series.length ? option.series[0].data.length : 0;
}"""
CHART_SERIES = """(cls) => {
  const chart = getElement(document.querySelector('.' + cls).id.replace(/^c/, '')).chart;
  return chart.getOption().series.map(s => s.data.length);
}"""


SORTED_BY_LOSS = """() => {
  const v = [...document.querySelectorAll('.runs-table tbody tr')].map(r => parseFloat(r.querySelectorAll('td')[6].innerText));
  return v.length === 4 && v.every((x, i) => !isNaN(x) && (i === 0 || v[i - 1] <= x));
}"""


async def shot(page, screenshots, name: str) -> None:
    await page.wait_for_timeout(400)  # let the charts finish drawing
    await page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


async def register_top_run_by_val_loss(page, model: str) -> None:
    """On the Experiments page, nothing selected: sort by val_loss (ascending), select
    the top run, register it as `model`."""
    await page.locator(".runs-table th", has_text=re.compile(r"(?<!best_)val_loss\s*$")).first.click()
    await page.wait_for_function(SORTED_BY_LOSS, timeout=10_000)
    await page.locator(".runs-table tbody tr").nth(0).locator(".q-checkbox").click()
    await page.get_by_role("button", name="Register as models").click()
    await field(page, "Model name").fill(model)
    await page.get_by_role("button", name="Register", exact=True).click()
    await page.get_by_text(re.compile(rf"Registered {re.escape(model)} v\d+")).wait_for(timeout=120_000)


def field(page, label: str):
    """A Quasar input by its label, as a person finds it."""
    return page.get_by_label(label, exact=True)


async def test_main_journey(ui_platform, page, screenshots):
    try:
        await journey(ui_platform.ui_url, page, screenshots)
    except Exception:
        await page.screenshot(path=str(screenshots / "failure.png"), full_page=True)
        raise


async def journey(base, page, screenshots):

    # Home: health and the way in.
    await page.goto(base + "/")
    await page.get_by_text("tuning: serving").wait_for()
    await page.get_by_text("all systems serving").wait_for(timeout=15_000)
    await shot(page, screenshots, "01-home")

    # Data: register the seed folder by path, see its preview.
    await page.get_by_role("button", name="Data", exact=True).click()
    await page.get_by_text("Add a dataset").wait_for()
    await field(page, "Name").fill("journey")
    await field(page, "Source URI").fill(str(SEED))
    await page.get_by_role("button", name="Register").click()
    await page.get_by_text(re.compile(r"journey@\w+ (registered|already registered)")).wait_for(timeout=60_000)
    await page.get_by_text(re.compile(r"100 rows · X/y folder")).wait_for()
    await shot(page, screenshots, "02-data")

    # Tune: from the dataset's preview; a study of 4 trials.
    await page.get_by_role("button", name="Tune on this dataset").click()
    await page.get_by_text("Search space").wait_for()
    await field(page, "Study name (optional)").fill("journey-study")
    await field(page, "Trials").fill("4")
    await field(page, "Epochs per trial").fill("4")
    await page.get_by_text("4 hyperparameters searched").wait_for()
    await shot(page, screenshots, "03-tune")
    await page.get_by_role("button", name="Start study").click()

    # Study: live progress to 4/4 and the history chart's points.
    await page.wait_for_url(re.compile(r"/study/"), timeout=30_000)
    study_id = page.url.rsplit("/", 1)[-1]
    await page.get_by_text(re.compile(r"^4/4 trials finished")).wait_for(timeout=STUDY_TIMEOUT_MS)
    await page.get_by_text("completed", exact=True).first.wait_for(timeout=30_000)
    await page.wait_for_function(f"() => ({CHART_POINTS})('history-chart') >= 1", timeout=10_000)
    points = await page.evaluate(CHART_POINTS, "history-chart")
    assert 1 <= points <= 4
    assert await page.get_by_text(re.compile(r"^best val_loss")).is_visible()
    assert await page.evaluate(CHART_POINTS, "curves-chart") >= 1
    await shot(page, screenshots, "04-study")

    # Experiments: this study's runs, two compared.
    await page.goto(f"{base}/experiments?study={study_id}")
    runs = page.locator(".runs-table tbody tr")
    await page.get_by_text(re.compile(r"^4 runs")).wait_for(timeout=30_000)
    assert await runs.count() == 4
    await shot(page, screenshots, "05-experiments")
    await runs.nth(0).locator(".q-checkbox").click()
    await runs.nth(1).locator(".q-checkbox").click()
    await page.get_by_role("button", name="Compare 2 runs").click()
    await page.get_by_text("Comparison").wait_for()
    await page.wait_for_function(f"() => ({CHART_SERIES.replace(chr(10), ' ')})('compare-val-chart').length == 2",
                                 timeout=10_000)
    assert all(n > 0 for n in await page.evaluate(CHART_SERIES, "compare-val-chart"))
    await page.get_by_text("differs").first.wait_for()
    await shot(page, screenshots, "06-compare")

    # Register the best: sort by val_loss (ascending), select only the top run.
    await runs.nth(0).locator(".q-checkbox").click()
    await runs.nth(1).locator(".q-checkbox").click()
    await register_top_run_by_val_loss(page, "journey-model")

    # Models: the version with its lineage, champion, a prediction.
    await page.get_by_role("button", name="Models", exact=True).click()
    await page.get_by_text("journey-model", exact=True).first.wait_for()
    await page.get_by_text("journey-model", exact=True).first.click()
    await page.locator(".q-badge", has_text="champion").first.wait_for()
    await page.get_by_role("link", name=study_id).first.wait_for()  # lineage: the study it came from
    await field(page, "Model").click()
    await page.get_by_role("option", name="journey-model@champion").click()
    await page.get_by_label(re.compile("Rows to predict")).fill("x0,x1,x2,x3,x4\n0.1,-0.2,0.3,0.5,-1\n1,1,1,1,1")
    await page.get_by_role("button", name="Predict", exact=True).click()
    await page.get_by_text(re.compile(r"^2 predictions from journey-model@champion \(version \d+\)")).wait_for(timeout=PREDICT_TIMEOUT_MS)
    cells = await page.locator(".q-table").last.locator("tbody tr").count()
    assert cells == 2
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download CSV").click()
    assert (await download.value).suggested_filename == "predictions.csv"
    await shot(page, screenshots, "07-models")
    assert not page.errors, page.errors
