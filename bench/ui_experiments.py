"""The Experiments page at 10,000 runs, in a browser: `python -m bench.ui_experiments [--runs N]`.

Starts the platform with its UI (no workers), seeds N trial runs x 20 epochs into its
MLflow database (bulk inserts, as bench.tracking_queries does), then in headless
Chromium times, from navigation or click to the rows drawn in the table (target: each
within 1 s):
  open /experiments (first page, newest first)
  click the train_loss header (server-side sort)
  next page; last page (page 200: one ListRuns call with `skip`, like any page)
Prints JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.tracking_queries import seed
from testing.browser import CHROMIUM, CHROMIUM_ARGS
from testing.platform import running_platform

FIRST_ROWS = """(n) => {
  const summary = [...document.querySelectorAll('div')].find(d => /^[\\d,]+ runs · showing 1–/.test(d.innerText));
  return summary && document.querySelectorAll('.runs-table tbody tr').length === n;
}"""


async def in_browser(base: str, runs: int, repeat: int) -> dict:
    from playwright.async_api import async_playwright

    out: dict[str, list[float]] = {"first_page_s": [], "sort_s": [], "next_page_s": [], "last_page_s": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for _ in range(repeat):
            page = await browser.new_page(viewport={"width": 1440, "height": 1000})
            t = time.perf_counter()
            await page.goto(base + "/experiments", wait_until="commit")
            await page.wait_for_function(FIRST_ROWS, arg=50, timeout=60_000)
            out["first_page_s"].append(time.perf_counter() - t)
            total = await page.get_by_text("runs · showing").inner_text()
            assert total.startswith(f"{runs:,} runs"), total

            first = await page.locator(".runs-table tbody tr td").nth(1).inner_text()
            t = time.perf_counter()
            await page.locator(".runs-table th", has_text="train_loss").first.click()
            await page.wait_for_function(
                "(first) => document.querySelector('.runs-table tbody tr td:nth-child(2)').innerText !== first",
                arg=first, timeout=30_000)
            out["sort_s"].append(time.perf_counter() - t)

            bottom = page.locator(".runs-table .q-table__bottom")
            t = time.perf_counter()
            await bottom.locator("button", has_text="chevron_right").click()
            await page.get_by_text("showing 51–100").wait_for(timeout=30_000)
            out["next_page_s"].append(time.perf_counter() - t)

            t = time.perf_counter()
            await bottom.locator("button", has_text="last_page").click()
            await page.get_by_text(f"showing {runs - 49:,}–{runs:,}").wait_for(timeout=30_000)
            out["last_page_s"].append(time.perf_counter() - t)
            await page.close()
        await browser.close()
    return {k: {"p50": round(statistics.median(v), 3), "max": round(max(v), 3)} for k, v in out.items()}


def gateway_calls(platform, exp: str, repeat: int) -> dict:
    """What the page asks the gateway for on opening, timed alone (p50, seconds)."""
    from kubetune.tracking.v1 import tracking_pb2 as tpb

    ch, stub = platform.stub()
    out = {}
    for name, call in (("ListRuns_first_page", lambda: stub.ListRuns(tpb.ListRunsRequest(page_size=50,
                                                                                          trials_only=True))),
                       ("ListExperiments", lambda: stub.ListExperiments(tpb.ListExperimentsRequest()))):
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t)
        out[f"{name}_p50_s"] = round(statistics.median(samples), 3)
    ch.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    from mlflow import MlflowClient

    home = Path(tempfile.mkdtemp(prefix="bench-ui-experiments-"))
    with running_platform(home, ui=True, workers=0) as platform:
        exp = MlflowClient(platform.mlflow_uri).create_experiment("kubetune/bench")
        t = time.perf_counter()
        seed(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", exp, args.runs, 20)
        seeded = time.perf_counter() - t
        calls = gateway_calls(platform, exp, args.repeat)
        results = asyncio.run(in_browser(platform.ui_url, args.runs, args.repeat))
    print(json.dumps({"runs": args.runs, "seed_s": round(seeded, 1), **calls, **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
