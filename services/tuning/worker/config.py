"""A tuning worker's settings (KUBETUNE_WORKER_*)."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from kubetune_common.config import PORTS, PartSettings, address_of, mlflow_uri
from services.tuning.config import storage_url, trial_grace_s


class Settings(PartSettings, env_prefix="KUBETUNE_WORKER_"):
    """A tuning worker. Env prefix KUBETUNE_WORKER_."""

    port: int = PORTS["worker"]
    name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", description="Shown on trials.")
    storage_url: str = storage_url()
    mlflow_uri: str = mlflow_uri()
    data_address: str = address_of("data")
    tracking_address: str = address_of("tracking")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="Where trials train: auto (CUDA when present, else the CPU), cpu, cuda or "
                        "cuda:N. A CUDA device that is absent stops the worker at start with the reason.")
    torch_threads: int = Field(1, description="torch threads per worker, so N workers do not fight over cores.")
    cache_dir: str = Field("", description="Dataset cache; empty: <home>/worker-cache.")
    ack_wait_s: float = Field(30.0, description="A ticket not acked or extended for this long is redelivered.")
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint for datasets stored in S3; empty: AWS.")
    max_deliveries: int = Field(3, description="Times a ticket is tried before it is dropped.")
    heartbeat_s: float = Field(5.0, description="How often a running trial records Optuna's heartbeat.")
    trial_grace_s: float = trial_grace_s()
    crash_at: str = Field("", description="TEST HOOK (crash_points.py), empty in production: steps at which to exit.")
    crash_flags: str = Field("", description="TEST HOOK: folder remembering which crash steps already fired.")
    curve_every_s: float = Field(1.0, gt=0, description="How often a training trial's curves are written to the "
                                 "Optuna storage (and always when it ends): what a study page opened mid-trial shows.")
