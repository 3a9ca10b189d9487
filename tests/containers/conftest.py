"""tests/containers: podman (with the CI machines' settings), the images built from this
tree (cached by their content tag between runs), and the platform run from them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.containers.substitutes import SUBSTITUTES, image_name
from tests.e2e.conftest import browser, page  # noqa: F401  Chromium for the UI container's page
from tests.k8s.parts import REPO

IN_CI = os.environ.get("CI", "").lower() == "true"
INFRA_DOCKERFILE = Path(__file__).with_name("infra") / "Dockerfile"
os.environ.setdefault("CONTAINERS_CONF", str(REPO / "k8s" / "images" / "containers.conf"))


def load_build():
    """k8s/images/build.py, the script `make images` runs."""
    spec = importlib.util.spec_from_file_location("kubetune_images_build", REPO / "k8s/images/build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = load_build()


def need_podman() -> str:
    found = shutil.which("podman")
    if found:
        return found
    message = "podman is missing: apt-get install podman buildah runc mmdebstrap (make install-test does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def engine() -> str:
    return need_podman()


@pytest.fixture(scope="session")
def base_image(engine) -> str:
    """$BASE_IMAGE; else the public Python image, here or pulled; else (no registry, as on
    the CI machines) the local base built from Debian's packages."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    for image in (build.PUBLIC_BASE, build.LOCAL_BASE):
        if build.image_id(engine, image):
            return image
    pulled = subprocess.run([engine, "pull", "-q", build.PUBLIC_BASE], capture_output=True, timeout=300)
    if pulled.returncode == 0:
        return build.PUBLIC_BASE
    subprocess.run([str(REPO / "k8s/images/base-image.sh"), build.LOCAL_BASE], check=True, timeout=1800)
    return build.LOCAL_BASE


@pytest.fixture(scope="session")
def images(engine, base_image) -> dict[str, str]:
    """Image name -> content-tagged reference: every part's, MLflow's and the infra stand-ins'."""
    refs = build.build_all(base_image)
    stand_ins = sorted({s.target for s in SUBSTITUTES.values()})
    refs |= build.ensure([build.Image(image_name(t), INFRA_DOCKERFILE, target=t) for t in stand_ins],
                         base_image)
    return refs


def pytest_configure(config):
    config.addinivalue_line("markers", "containers: builds the images and runs them with podman "
                            "(tests/containers; `-m 'not containers'` leaves them out)")
