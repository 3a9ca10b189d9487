"""The images `make images` builds, checked as built: each within its size budget, every
module of its part importable in it (torch only in the worker's and registry's), run as
uid 10001 with HOME on the writable volume, and not rebuilt when nothing in it changed."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.containers.prepare import build
from tests.k8s.parts import PARTS

# The first test to ask for the images builds the missing ones: minutes on a cold machine.
pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(3600)]

# MB (10^6 bytes) as `podman images` shows them; worker and registry hold CPU torch.
BUDGETS_MB = {"kubetune-gateway": 450, "kubetune-tuning": 450, "kubetune-ui": 450,
              "kubetune-data": 500, "kubetune-tracking": 500,
              "kubetune-worker": 2200, "kubetune-registry": 2200}


def inspect(engine: str, ref: str) -> dict:
    out = subprocess.run([engine, "image", "inspect", ref], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def test_every_part_has_a_budget():
    assert set(BUDGETS_MB) == {p.image for p in PARTS.values()}


def test_images_within_their_size_budgets(engine, images):
    sizes = {name: inspect(engine, images[name])["Size"] / 1e6 for name in BUDGETS_MB}
    print("\n".join(f"{n}: {s:.0f} MB (budget {BUDGETS_MB[n]})" for n, s in sorted(sizes.items())))
    over = {n: round(s) for n, s in sizes.items() if s > BUDGETS_MB[n]}
    assert over == {}, f"over budget (MB): {over}"


def test_images_run_as_the_manifests_user_with_home_on_a_volume(engine, images):
    for part in PARTS.values():
        config = inspect(engine, images[part.image])["Config"]
        env = dict(e.split("=", 1) for e in config["Env"])
        assert config["User"] == "10001", part.image
        assert env["HOME"] == "/tmp" and env["KUBETUNE_MODULE"] == part.module, part.image


# Imports every module of a package (from its files: a package is not imported to be
# walked) but the subpackages named after it and __main__ (which would start the part).
IMPORT_EVERY_MODULE = """
import importlib, importlib.util, pathlib, sys
root, skip = sys.argv[1], tuple(sys.argv[2:])
top = pathlib.Path(importlib.util.find_spec(root).origin).parent
for f in sorted(top.rglob("*.py")):
    parts = (root, *f.relative_to(top).with_suffix("").parts)
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if parts[-1] != "__main__" and not any(name == s or name.startswith(s + ".") for s in skip):
        importlib.import_module(name)
print(f"torch={importlib.util.find_spec('torch') is not None}")
"""


def test_every_module_of_a_part_imports_in_its_image_and_torch_only_where_needed(engine, images):
    """What a part's image installs is what its code imports (a module that imports a
    package only another extra brings fails here, not in a pod): each part's package
    less the other parts' packages inside it (the worker's, inside tuning's). And torch
    is in the worker's and the registry's images only."""
    for part in PARTS.values():
        inside = [p.module for p in PARTS.values() if p.module.startswith(part.module + ".")]
        done = subprocess.run([engine, "run", "--rm", "--pull", "never", "--read-only", "--entrypoint",
                               "python", images[part.image], "-c", IMPORT_EVERY_MODULE, part.module, *inside],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{part.image}: {done.stderr[-3000:]}"
        assert done.stdout.split()[-1] == f"torch={part.torch}", (part.image, done.stdout)


def test_unchanged_images_are_not_rebuilt(engine, images, base_image, capsys):
    again = build.build_all(base_image)
    assert {n: again[n] for n in again} == {n: images[n] for n in again}
    assert capsys.readouterr().out.count("up to date") == len(again)


def test_a_part_is_tagged_by_what_it_copies():
    """A change under gateway/ retags the gateway image only; one under services/ all parts."""
    copied = {i.name: {p.name for p in i.copied()} for i in build.images()}
    assert "gateway" in copied["kubetune-gateway"] and "gateway" not in copied["kubetune-data"]
    assert "ui" not in copied["kubetune-worker"]
    assert all({"services", "gen", "lock.txt"} <= copied[p.image] for p in PARTS.values())
