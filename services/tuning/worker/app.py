"""Wires a warm worker: NATS, the data and tracking clients, the Optuna storage, the
dataset cache and the trial runner, behind a gRPC server that answers health only.
The worker itself (the ticket consumer) is in adapters.py, the trial in trials.py."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from services.common.clients import Backend, DataClient, TrackingClient
from services.common.events import EventBus
from services.common.server import Service, cleanup_on_failure, make_server
from services.tuning import store
from services.tuning.worker.adapters import CALL_TIMEOUT_S, TrialPorts, Worker
from services.tuning.worker.config import Settings
from services.tuning.worker.crash_points import CrashPoints
from services.tuning.worker.datasets import DatasetCache
from services.tuning.worker.trials import TrialRunner

log = logging.getLogger(__name__)
# How long a trial waits out the data or tracking service restarting before it fails.
OUTAGE_BUDGET_S = 180


@dataclass
class WorkerApp(Service):
    worker: Worker


def s3_client_factory(settings: Settings):
    def s3_client():
        import boto3  # only when a dataset is read from S3

        return boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)

    return s3_client


async def start(settings: Settings) -> WorkerApp:
    torch.set_num_threads(settings.torch_threads)
    home = Path(settings.home)
    async with cleanup_on_failure() as opened:
        bus = await EventBus.open(settings.nats_url, f"worker-{settings.name}")
        opened.add(bus.close)
        data = DataClient(Backend("data", settings.data_address, CALL_TIMEOUT_S, OUTAGE_BUDGET_S))
        opened.add(data.close)
        tracking = TrackingClient(Backend("tracking", settings.tracking_address, CALL_TIMEOUT_S, OUTAGE_BUDGET_S))
        opened.add(tracking.close)
        storage = store.make_storage(settings.storage_url or store.default_storage_url(home))
        cache = DatasetCache(Path(settings.cache_dir) if settings.cache_dir else home / "worker-cache",
                             s3_client_factory(settings))

        def runner_factory(worker: Worker) -> TrialRunner:
            ports = TrialPorts(worker, data, tracking, storage, CrashPoints(settings.crash_at, settings.crash_flags))
            return TrialRunner(storage, ports, cache, settings.name, settings.mlflow_uri,
                               heartbeat_s=settings.heartbeat_s, grace_s=settings.trial_grace_s,
                               curve_every_s=settings.curve_every_s, device=settings.device)

        worker = Worker(settings, bus, runner_factory)
        await worker.watch_studies()
        server = await make_server(settings.address, lambda s: [])
        worker.task = asyncio.create_task(worker.consume())
        opened.add(worker.stop)  # the first to stop: the running trial gives its ticket back
        log.info("worker %s ready (device %s, torch threads %d)", settings.name, worker.runner.device,
                 settings.torch_threads)
        return WorkerApp(opened.serve(server), worker)
