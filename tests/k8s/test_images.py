"""The part Dockerfile, exercised as far as possible without a Docker engine: read and
checked against the parts; their install step resolved by pip; the part imported
from a venv that holds only the image's dependency set."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.k8s import image_checks as ic
from tests.k8s import skaffold_checks as s
from tests.k8s.parts import DOCKERFILE, PARTS, QUERY_PARTS, REPO

MLFLOW_REQUIREMENTS = REPO / "k8s" / "images" / "mlflow" / "requirements.txt"


def test_dockerfile():
    assert ic.check_dockerfile() == []


@pytest.mark.parametrize("name", sorted(PARTS))
def test_part_build_args(name):
    part = PARTS[name]
    assert ic.check_part(part, skaffold_args(name)) == []
    copies = ic.Dockerfile.read(REPO / DOCKERFILE).source_copies(part.build_args())
    assert ic.dockerignored(copies) == []


def skaffold_args(name: str) -> dict[str, str]:
    (artifact,) = s.artifacts(s.by_name(s.load())[name])
    return artifact["docker"]["buildArgs"]


def test_torch_parts_share_one_dependencies_stage():
    """Same extras and torch: the worker's and the registry's dependency layers are one."""
    worker, registry = skaffold_args("tuning-worker"), skaffold_args("registry")
    shared = ("EXTRAS", "TORCH", "RELOAD")
    assert {k: worker[k] for k in shared} == {k: registry[k] for k in shared}


@pytest.mark.parametrize("old, new, words", [
    ("python:3.11.11-slim-bookworm", "python:3.11-slim", "pinned"),
    ("USER 10001", "USER root", "non-root"),
    ('".[${EXTRAS}]"', '".[data]"', "EXTRAS"),
    ("KUBETUNE_MODULE=${MODULE}", "KUBETUNE_MODULE=services.data", "MODULE"),
    ("COPY --chown=10001:10001 gen /app/gen\n", "", "gen"),
    ("HOME=/tmp", "HOME=/home/kubetune", "HOME"),
    ('--extra-index-url "$TORCH_INDEX_URL"', '--index-url "$TORCH_INDEX_URL"', "extra one"),
    ('pip install -c lock.txt ".[${EXTRAS}]"', 'pip install ".[${EXTRAS}]"', "lock"),
])
def test_broken_dockerfile_fails(tmp_path, old, new, words):
    text = (REPO / DOCKERFILE).read_text()
    assert old in text
    copy = tmp_path / "Dockerfile"
    copy.write_text(text.replace(old, new))
    assert any(words in p for p in ic.check_dockerfile(copy))


@pytest.mark.parametrize("name, key, value, words", [
    ("data", "TORCH", "true", "TORCH"),
    ("tuning-worker", "TORCH", None, "TORCH"),
    ("data", "EXTRAS", "tuning", "EXTRAS"),
    ("gateway", "PACKAGE", None, "does not copy gateway"),
    ("ui", "PACKAGE", "iu", "does not exist"),
])
def test_wrong_build_args_fail(name, key, value, words):
    args = dict(skaffold_args(name))
    if value is None:
        args.pop(key)
    else:
        args[key] = value
    assert any(words in p for p in ic.check_part(PARTS[name], args))


def test_dockerignore_catches_a_hidden_copy():
    assert ic.dockerignored(["tests", "k8s/images/entrypoint.sh", "services"]) == ["tests"]


def test_entrypoint_script():
    assert ic.ENTRYPOINT_SCRIPT.stat().st_mode & 0o111, "entrypoint.sh must be executable"
    subprocess.run(["sh", "-n", str(ic.ENTRYPOINT_SCRIPT)], check=True)
    assert ic.check_dockerfile() == []


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
