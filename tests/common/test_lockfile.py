"""requirements/lock.txt against pyproject.toml: current, and every way it goes stale caught."""

from __future__ import annotations

import re
import shutil

from services.common import lockfile
from tests.k8s.parts import REPO


def test_lock_describes_pyproject():
    assert lockfile.stale() == [], "run `make lock` and commit requirements/lock.txt"


def copies(tmp_path):
    pyproject, lock = tmp_path / "pyproject.toml", tmp_path / "lock.txt"
    shutil.copy(lockfile.PYPROJECT, pyproject)
    shutil.copy(lockfile.LOCK, lock)
    return pyproject, lock


def test_edited_pyproject_without_a_new_lock_fails(tmp_path):
    pyproject, lock = copies(tmp_path)
    pyproject.write_text(pyproject.read_text().replace('"pydantic>=2.7",', '"pydantic>=2.7",\n  "rich>=13",'))
    problems = lockfile.stale(pyproject, lock)
    assert any("requirements changed" in p for p in problems)
    assert any(p.startswith("rich is required but not pinned") for p in problems)


def test_pin_outside_a_requirement_fails(tmp_path):
    pyproject, lock = copies(tmp_path)
    lock.write_text(re.sub(r"(?m)^pandas==.*$", "pandas==1.5.3", lock.read_text()))
    assert lockfile.stale(pyproject, lock) == [
        "pandas==1.5.3 does not satisfy 'pandas>=2.2': run `make lock`"]


def test_lock_pins_a_torch_every_build_of_it_satisfies():
    _, pins = lockfile.read()
    assert lockfile.TORCH == f"torch=={pins['torch']}" and "+" not in pins["torch"]
    assert not [n for n in pins if n.startswith("nvidia-")], "a CUDA torch was resolved"


def test_local_installs_and_images_use_the_lock():
    makefile = (REPO / "Makefile").read_text()
    installs = re.findall(r"\$\(PIP\) install (?!-q --upgrade pip).*", makefile)
    assert installs and all("-c $(LOCK)" in line for line in installs)
    dockerfile = (REPO / "k8s/images/Dockerfile").read_text()
    assert "COPY requirements/lock.txt" in dockerfile


def test_an_edit_outside_the_requirements_needs_no_new_lock(tmp_path):
    pyproject, lock = copies(tmp_path)
    pyproject.write_text(pyproject.read_text().replace('timeout = 600', 'timeout = 900'))
    assert lockfile.stale(pyproject, lock) == []
