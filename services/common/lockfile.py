"""requirements/lock.txt: every version the project installs, resolved from pyproject.toml.
`make lock` writes it; images, `make up` and `make test` install with it as pip constraints;
a test fails when pyproject.toml changed after the lock was written."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements" / "lock.txt"
# torch's CPU build; any other torch request pulls a multi-GB CUDA build (DESIGN.md).
TORCH = "torch==2.13.0"
HASH_LINE = "# pyproject.toml requirements sha256: "


def pyproject_hash(pyproject: Path = PYPROJECT) -> str:
    """sha256 of what the lock is resolved from (requirements, extras, Python), so an edit
    elsewhere in pyproject.toml (pytest's settings) needs no new lock."""
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = {k: project.get(k) for k in ("requires-python", "dependencies", "optional-dependencies")}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


def resolve(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """name -> version of everything `pip install torch .[test]` installs into an empty
    environment (one pip dry run; the project itself left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        shutil.copy(pyproject, src / "pyproject.toml")
        (src / "README.md").touch()
        (src / "gen").mkdir()
        report = src / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
               "--quiet", "--report", str(report), TORCH, ".[test]"]
        done = subprocess.run(cmd, cwd=src, capture_output=True, text=True,
                              env={**os.environ, "PIP_NO_INPUT": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"pip could not resolve pyproject.toml:\n{done.stderr[-4000:]}")
        installs = json.loads(report.read_text())["install"]
    pins = {}
    for item in installs:
        name = canonical(item["metadata"]["name"])
        if name != "kubetune":
            # A local label (+cpu) names a build, not a version: the pin fits every build.
            pins[name] = item["metadata"]["version"].split("+")[0]
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def render(pins: dict[str, str], digest: str) -> str:
    lines = [
        "# Every version kubetune installs: `make lock` writes this file from pyproject.toml.",
        "# Images, `make up` and `make test` install with it as pip constraints (-c).",
        f"{HASH_LINE}{digest}",
    ]
    return "\n".join(lines + [f"{n}=={v}" for n, v in sorted(pins.items())]) + "\n"


def read(lock: Path = LOCK) -> tuple[str, dict[str, str]]:
    digest, pins = "", {}
    for line in lock.read_text().splitlines():
        if line.startswith(HASH_LINE):
            digest = line[len(HASH_LINE):].strip()
        elif line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return digest, pins


def stale(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> list[str]:
    """Why the lock no longer describes pyproject.toml (empty when it does): pyproject.toml
    changed since the lock was written, or a requirement has no pin that satisfies it."""
    from packaging.requirements import Requirement

    if not lock.exists():
        return [f"{lock.name} is missing: run `make lock`"]
    digest, pins = read(lock)
    problems = []
    if digest != pyproject_hash(pyproject):
        problems.append("pyproject.toml's requirements changed after the lock was written: "
                        "run `make lock`")
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = list(project["dependencies"])
    for reqs in project.get("optional-dependencies", {}).values():
        wanted += reqs
    for spec in wanted:
        req = Requirement(spec)
        name = canonical(req.name)
        if name == "kubetune":
            continue
        if name not in pins:
            problems.append(f"{req.name} is required but not pinned: run `make lock`")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}=={pins[name]} does not satisfy {spec!r}: run `make lock`")
    return list(dict.fromkeys(problems))  # a requirement repeated in several extras: once


if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        problems = stale()
        print("\n".join(problems) or f"{LOCK.relative_to(ROOT)} is current")
        sys.exit(1 if problems else 0)
    LOCK.write_text(render(resolve(), pyproject_hash()))
    print(f"wrote {LOCK.relative_to(ROOT)}")
