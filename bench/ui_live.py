"""Live study latency, event to pixels: `python -m bench.ui_live [--epochs N]`.

Starts the platform with its UI and no workers, creates a study (it stays queued),
opens its live page in headless Chromium, then publishes EpochCompleted events for
trial 0 to NATS as a worker would, one every --gap seconds. In the page, a
requestAnimationFrame loop notes when the learning-curve chart's data (read from the
ECharts instance) grows; latency = that moment - the moment the event was published
(one machine, one clock). Target p50 <= 0.5 s. Prints JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kubetune.events.v1 import events_pb2 as ev
from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common.events import EventBus
from testing.browser import CHROMIUM, CHROMIUM_ARGS
from testing.studies import small_spec
from testing.platform import running_platform

WATCH = """() => {
  window.__seen = [];
  const el = document.querySelector('.curves-chart');
  const chart = () => getElement(el.id.replace(/^c/, '')).chart;
  let last = 0;
  const tick = () => {
    const c = chart();
    const series = c && c.getOption() && c.getOption().series;
    const n = series && series.length ? series[0].data.length : 0;
    if (n > last) { window.__seen.push([n, Date.now()]); last = n; }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""


async def measure(platform, epochs: int, gap: float) -> dict:
    from playwright.async_api import async_playwright

    ch, stub = platform.stub()
    study = stub.CreateStudy(pb.CreateStudyRequest(spec=small_spec(trials=1, epochs=epochs, name="bench-live"))).study
    ch.close()
    bus = await EventBus.open(f"nats://127.0.0.1:{platform.ports['nats']}", "bench-ui-live")
    published: dict[int, float] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1440, "height": 1000})
        await page.goto(f"{platform.ui_url}/study/{study.id}")
        await page.get_by_text("0/1 trials finished").wait_for(timeout=30_000)
        await page.evaluate(WATCH)
        await bus.publish(trial_started=ev.TrialStarted(study_id=study.id, trial=0, params={"units": "8"}))
        await asyncio.sleep(gap)
        for epoch in range(epochs):
            published[epoch + 1] = time.time() * 1000
            await bus.publish(epoch_completed=ev.EpochCompleted(
                study_id=study.id, trial=0, epoch=epoch, train_loss=1.0 / (epoch + 1), val_loss=1.1 / (epoch + 1)))
            await asyncio.sleep(gap)
        seen = dict(await page.evaluate("() => window.__seen"))
        await browser.close()
    await bus.close()
    latencies = [(seen[n] - published[n]) / 1000 for n in published if n in seen]
    return {"events": epochs, "drawn": len(latencies), "p50_s": round(statistics.median(latencies), 3),
            "p90_s": round(sorted(latencies)[int(0.9 * (len(latencies) - 1))], 3), "max_s": round(max(latencies), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between events")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    with running_platform(Path(tempfile.mkdtemp(prefix="bench-ui-live-")), ui=True, workers=0) as platform:
        results = asyncio.run(measure(platform, args.epochs, args.gap))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
