"""Everything tests/containers runs, built: the base image, every part's image, MLflow's and
the infra stand-ins. The test session starts this as its own process when it begins
(conftest.py), so the builds run while the rest of the suite waits on its servers:
    python -m tests.containers.prepare REFS.json   (writes {"base": ..., "refs": {...}})"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INFRA_DOCKERFILE = Path(__file__).with_name("infra") / "Dockerfile"


def load_build():
    """k8s/images/build.py, the script `make images` runs."""
    name = "kubetune_images_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "k8s/images/build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = load_build()


def base_image(engine: str) -> str:
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
    print(f"{build.PUBLIC_BASE} cannot be pulled: building {build.LOCAL_BASE} from Debian's packages",
          flush=True)
    subprocess.run([str(REPO / "k8s/images/base-image.sh"), build.LOCAL_BASE], check=True, timeout=1800)
    return build.LOCAL_BASE


def prepare() -> dict:
    from tests.containers.substitutes import SUBSTITUTES, image_name

    start = time.monotonic()
    base = base_image(build.engine())
    refs = build.build_all(base)
    stand_ins = sorted({s.target for s in SUBSTITUTES.values()})
    refs |= build.ensure([build.Image(image_name(t), INFRA_DOCKERFILE, target=t) for t in stand_ins], base)
    print(f"all images ready in {time.monotonic() - start:.0f} s", flush=True)
    return {"base": base, "refs": refs}


def main() -> None:
    out = Path(sys.argv[1])
    result = prepare()
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)  # whole or absent: the session reads it once this process has exited


if __name__ == "__main__":
    main()
