"""A mixed table in a real browser (issue 13), and the demo study (issue 16): the Data page
shows each column's type and lets the user change types before and after registering;
the study page puts the best trial's test metric beside the linear baseline's; the
Models page shows the registered trial's test metrics. Screenshots go to
tests/e2e/screenshots/ (docs/data-column-types.png and docs/study-demo.png are taken
from them)."""

from __future__ import annotations

import re

import pytest

from kubetune.tuning.v1 import tuning_pb2 as tpb
from testing.tables import regression_table, write_table
from tests.e2e.test_browser import STUDY_TIMEOUT_MS, field, register_top_run_by_val_loss, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COLUMN_TYPES = """() => Object.fromEntries([...document.querySelectorAll('.column-types tbody tr')]
  .map(r => [...r.querySelectorAll('td')].map(td => td.innerText.trim()))
  .map(cells => [cells[0], {type: cells[1], note: cells[4] || ''}]))"""


CURVES = """() => {
  const el = document.querySelector('.curves-chart');
  const option = getElement(el.id.replace(/^c/, '')).chart.getOption();
  return Object.fromEntries(option.series.map(s => [s.name, {first: s.data.length ? s.data[0][0] : -1, n: s.data.length}]));
}"""
TRIAL_EPOCHS = """() => {
  const table = [...document.querySelectorAll('.q-table')].find(t => /Last val_loss/.test(t.innerText));
  const heads = [...table.querySelectorAll('thead th')].map(th => th.innerText.trim().replace(/^\\W+/, ''));
  const trial = heads.findIndex(h => h.endsWith('Trial')), epochs = heads.indexOf('Epochs');
  return Object.fromEntries([...table.querySelectorAll('tbody tr')].map(r => {
    const td = r.querySelectorAll('td'); return [td[trial].innerText.trim(), parseInt(td[epochs].innerText)]; }));
}"""
SERIES_POINTS = """(cls) => {
  const option = getElement(document.querySelector('.' + cls).id.replace(/^c/, '')).chart.getOption();
  return option.series.reduce((n, s) => n + s.data.length, 0);
}"""


async def column_types(page) -> dict[str, dict]:
    await page.locator(".column-types tbody tr").first.wait_for()
    return await page.evaluate(COLUMN_TYPES)


def best_trial(platform, study_id: str) -> tpb.Trial:
    channel, stub = platform.stub()
    try:
        return stub.GetStudy(tpb.GetStudyRequest(study_id=study_id), timeout=30).study.best_trial
    finally:
        channel.close()


async def test_a_mixed_table_from_data_page_to_model(ui_platform, page, screenshots, tmp_path):
    table = regression_table(rows=300, seed=4)
    csv = write_table(table, tmp_path)["csv"]
    base = ui_platform.ui_url
    try:
        # Data: name the target, declare `tenure_months` categorical before registering.
        await page.goto(base + "/data")
        await page.get_by_text("Add a dataset").wait_for()
        await field(page, "Name").fill("mixed-browser")
        await field(page, "Source URI").fill(str(csv))
        await page.get_by_label("Target column (single table)").first.fill(table.target)
        await page.get_by_label("Categorical columns").first.fill("tenure_months")
        await page.get_by_role("button", name="Register").click()
        await page.get_by_text(re.compile(r"mixed-browser@\w+ registered")).wait_for(timeout=120_000)
        types = await column_types(page)
        assert types["region"]["type"] == "categorical" and types["product"]["type"] == "categorical"
        assert types["age"]["type"] == "numeric" and types["is_member"]["type"] == "boolean"
        assert types["tenure_months"]["type"] == "categorical"  # as declared
        assert types["customer_id"]["type"] == "excluded" and "distinct" in types["customer_id"]["note"]
        assert types[table.target]["type"] == "target"
        await shot(page, screenshots, "11-data-column-types")

        # After registering: read `colour` (no signal) as excluded and register again.
        first_version = await page.get_by_label("Version").first.input_value()
        await page.get_by_label("colour", exact=True).click()
        await page.get_by_role("option", name="exclude", exact=True).click()
        await page.get_by_role("button", name="Register again with these types").click()
        await page.wait_for_function(
            "(v) => { const t = document.querySelector('.column-types tbody'); "
            "return t && /colour\\s+excluded/.test(t.innerText); }", arg=first_version, timeout=120_000)
        types = await column_types(page)
        assert types["colour"]["type"] == "excluded" and types["region"]["type"] == "categorical"

        # Tune on it: 4 short trials; the study page shows the baseline beside the best trial.
        await page.get_by_role("button", name="Tune on this dataset").click()
        await page.get_by_text("Search space").wait_for()
        await field(page, "Trials").fill("4")
        await field(page, "Epochs per trial").fill("5")
        await page.get_by_role("button", name="Start study").click()
        await page.wait_for_url(re.compile(r"/study/"), timeout=30_000)
        study_id = page.url.rsplit("/", 1)[-1]
        await page.get_by_text(re.compile(r"^4/4 trials finished")).wait_for(timeout=STUDY_TIMEOUT_MS)
        headline = page.get_by_text(re.compile(r"^best trial: test RMSE"))
        await headline.wait_for(timeout=30_000)
        assert "baseline (ridge regression): test RMSE" in await headline.inner_text()

        # Register the best trial; the Models page shows its test metrics.
        best = best_trial(ui_platform, study_id)
        await page.goto(f"{base}/experiments?study={study_id}")
        await page.get_by_text(re.compile(r"^4 runs")).wait_for(timeout=30_000)
        await register_top_run_by_val_loss(page, "mixed-browser-model")
        await page.get_by_role("button", name="Models", exact=True).click()
        await page.get_by_text("mixed-browser-model", exact=True).first.click()
        # The version's metrics (other models registered by other tests may be listed too).
        want = f"test RMSE {best.metrics['test/rmse']:.4g}"
        metrics = page.get_by_text(re.compile(rf"{re.escape(want)}\b"))
        await metrics.first.wait_for(timeout=30_000)
        assert "test R²" in await metrics.first.inner_text()
        await shot(page, screenshots, "12-models-test-metrics")
        assert not page.errors, page.errors
    except Exception:
        await page.screenshot(path=str(screenshots / "failure-tables.png"), full_page=True)
        raise


async def test_the_demo_study_from_the_tune_page(ui_platform, page, screenshots):
    """Issue 16.1: the Tune page opens on the diabetes demo; Start with the default search
    space learns (the best trial beats predicting the mean: test R² > 0) and the page
    says how it compares with the baseline."""
    base = ui_platform.ui_url
    try:
        await page.goto(base + "/tune")
        await page.get_by_text("Search space").wait_for()
        assert (await page.get_by_label("Dataset").first.input_value()).startswith("diabetes")
        await page.get_by_text("4 hyperparameters searched").wait_for()
        await field(page, "Study name (optional)").fill("demo-browser")
        await field(page, "Trials").fill("10")
        await page.get_by_role("button", name="Start study").click()
        await page.wait_for_url(re.compile(r"/study/demo-browser"), timeout=30_000)
        await page.get_by_text(re.compile(r"^10/10 trials finished")).wait_for(timeout=STUDY_TIMEOUT_MS)
        headline = page.get_by_text(re.compile(r"^best trial: test RMSE"))
        await headline.wait_for(timeout=30_000)
        text = await headline.inner_text()
        assert "baseline (ridge regression)" in text
        r2 = float(re.search(r"R² (-?[\d.]+)", text).group(1))
        assert r2 > 0, text  # the demo has signal: the best trial beats the mean on test
        # Every trial's curve from its first epoch, as long as its Epochs column says
        # (pruned ones included); the contour plot drawn from the completed trials.
        curves = await page.evaluate(CURVES)
        epochs = await page.evaluate(TRIAL_EPOCHS)
        assert len(curves) == 10 and all(c["first"] == 0 for c in curves.values()), curves
        assert {label: c["n"] for label, c in curves.items()} == {f"trial {t}": n for t, n in epochs.items()}
        assert await page.evaluate(SERIES_POINTS, "contour-chart") > 0
        await page.locator(".q-notification").first.wait_for(state="hidden", timeout=30_000)  # the toast
        await shot(page, screenshots, "13-demo-study")
        assert not page.errors, page.errors
    except Exception:
        await page.screenshot(path=str(screenshots / "failure-demo.png"), full_page=True)
        raise
