"""The Dockerfiles, exercised as far as possible without a Docker engine: read and
checked against the parts; their install step resolved by pip; the part imported
from a venv that holds only the image's dependency set."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.k8s import image_checks as ic
from tests.k8s.parts import PARTS, QUERY_PARTS, REPO

MLFLOW_REQUIREMENTS = REPO / "k8s" / "images" / "mlflow" / "requirements.txt"


@pytest.mark.parametrize("name", sorted(PARTS))
def test_dockerfile(name):
    part = PARTS[name]
    assert ic.check_dockerfile(part) == []
    assert ic.dockerignored(ic.Dockerfile.read(REPO / part.dockerfile).source_copies()) == []


@pytest.mark.parametrize("old, new, words", [
    ("python:3.11.11-slim-bookworm", "python:3.11-slim", "pinned"),
    ("USER 10001", "USER root", "non-root"),
    ('".[data]"', '".[tuning]"', "[data] extra"),
    ("KUBETUNE_MODULE=services.data", "KUBETUNE_MODULE=services.dta", "services.dta"),
    ('pip install ".[data]"', 'pip install torch ".[data]"', "installs torch"),
    ("COPY --chown=10001:10001 gen /app/gen\n", "", "gen"),
])
def test_broken_dockerfile_fails(tmp_path, old, new, words):
    part = PARTS["data"]
    text = (REPO / part.dockerfile).read_text()
    assert old in text
    copy = tmp_path / "Dockerfile"
    copy.write_text(text.replace(old, new))
    assert any(words in p for p in ic.check_dockerfile(part, copy))


def test_worker_without_torch_first_fails(tmp_path):
    part = PARTS["tuning-worker"]
    text = (REPO / part.dockerfile).read_text()
    copy = tmp_path / "Dockerfile"
    copy.write_text(text.replace('RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"\n', ""))
    assert any("torch" in p for p in ic.check_dockerfile(part, copy))


def test_dockerignore_catches_a_hidden_copy():
    assert ic.dockerignored(["tests", "k8s/images/entrypoint.sh", "services"]) == ["tests"]


def test_entrypoint_script():
    assert ic.ENTRYPOINT_SCRIPT.stat().st_mode & 0o111, "entrypoint.sh must be executable"
    subprocess.run(["sh", "-n", str(ic.ENTRYPOINT_SCRIPT)], check=True)
    assert ic.check_dockerfile(PARTS["ui"]) == []


# ---------------------------------------------------------------- needs PyPI


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PARTS))
def test_image_dependencies_resolve(name, tmp_path):
    """The Dockerfile's install step (`pip install ".[extra]"` on pyproject.toml
    alone; torch already installed where the image has it), as a dry run."""
    part = PARTS[name]
    pins = ic.resolve(part, tmp_path)
    assert pins
    torchy = sorted(p for p in pins if p in ic.TORCH_FAMILY or p.startswith("nvidia-"))
    if part.torch:
        assert "torch" not in pins, "torch must come from the first, CPU-index step"
        assert not [p for p in pins if p.startswith("nvidia-")], "a CUDA build slipped in"
    else:
        assert torchy == [], f"{part.image} would install {torchy}"


@pytest.mark.slow
def test_mlflow_image_dependencies_resolve(tmp_path):
    pins = ic.resolve_requirements(MLFLOW_REQUIREMENTS, tmp_path)
    assert {"mlflow", "psycopg2-binary", "boto3"} <= set(pins)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, p in PARTS.items() if not p.torch))
def test_part_imports_with_only_its_image_dependencies(name, tmp_path):
    """Each torch-free image's entry imports in a venv holding exactly that image's
    dependency set and /app as the Dockerfile lays it out, and never pulls in torch.
    (The worker and registry images are left out: a torch venv is the slow part;
    their dependency sets are still resolved above.)"""
    part = PARTS[name]
    start = time.monotonic()
    (tmp_path / "resolve").mkdir()
    pins = ic.resolve(part, tmp_path / "resolve")
    python = ic.deps_only_env(pins, tmp_path)
    app = ic.source_tree(part, tmp_path / "app")
    modules = ic.entry_modules(part)
    done = ic.import_in(python, app, modules)
    assert done.returncode == 0, f"{modules} in {part.image}'s environment:\n{done.stderr[-3000:]}"
    assert done.stdout.strip() == "[]", f"{part.name} imported {done.stdout}"
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert time.monotonic() - start < 300
    assert name not in QUERY_PARTS or "torch" not in pins
