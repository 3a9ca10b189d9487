"""`make images`: builds every image skaffold.yaml names, with the build args it gives
them, tagged by the content that went in, so an unchanged part is not rebuilt."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SKAFFOLD = ROOT / "skaffold.yaml"
PUBLIC_BASE = "python:3.11.11-slim-bookworm"
LOCAL_BASE = "kubetune-base:bookworm"
# Folders and files .dockerignore keeps out of every build context.
IGNORED = ("__pycache__", ".pytest_cache")


@dataclass
class Image:
    name: str  # kubetune-data
    dockerfile: Path
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None  # a stage of a multi-image Dockerfile

    def copied(self) -> list[Path]:
        """Repository paths the Dockerfile COPYs (ARGs substituted), build context only."""
        text = re.sub(r"\\\n\s*", " ", self.dockerfile.read_text())
        defaults = dict(re.findall(r"^ARG (\w+)=(\S*)", text, re.M))
        values = {**defaults, **self.args}
        paths = []
        for line in re.findall(r"^COPY (.+)$", text, re.M):
            words = [w for w in line.split() if not w.startswith("--")]
            if "--from" in line:
                continue
            for src in words[:-1]:
                src = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], ""), src)
                paths.append(ROOT / src)
        return paths


def images(reload: bool = False) -> list[Image]:
    """Every artifact of skaffold.yaml, with its build args (RELOAD from `reload`: the
    dev images restart on a synced file; `make images` builds the plain ones)."""
    out = []
    for doc in yaml.safe_load_all(SKAFFOLD.read_text()):
        for art in (doc or {}).get("build", {}).get("artifacts", []):
            args = {k: str(v) for k, v in art["docker"].get("buildArgs", {}).items()}
            if "RELOAD" in args:
                args["RELOAD"] = "true" if reload else "false"
            out.append(Image(art["image"], ROOT / art["docker"]["dockerfile"], args))
    return out


def engine() -> str:
    found = shutil.which("podman") or shutil.which("docker")
    if not found:
        raise SystemExit("neither podman nor docker is installed")
    return found


def image_id(eng: str, ref: str) -> str | None:
    done = subprocess.run([eng, "image", "inspect", "--format", "{{.Id}}", ref],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def content_tag(image: Image, base_id: str, extra: dict[str, str]) -> str:
    """sha256 of the Dockerfile, the args, the base image and every file it copies."""
    h = hashlib.sha256()
    h.update(image.dockerfile.read_bytes())
    h.update(json.dumps({**image.args, **extra, "base": base_id, "target": image.target},
                        sort_keys=True).encode())
    for path in sorted(set(image.copied())):
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and not set(p.parts) & set(IGNORED)
            and p.suffix != ".pyc")
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def local_wheels() -> list[Path]:
    """The host's local wheel folders (pip's find-links): carried into the build so pip
    there finds what pip here finds, e.g. the CPU torch wheel where its index is out of
    reach."""
    links = os.environ.get("PIP_FIND_LINKS", "")
    if not links:
        done = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                              capture_output=True, text=True)
        links = done.stdout if done.returncode == 0 else ""
    return [Path(p) for p in links.split() if Path(p).is_dir()]


def build(image: Image, eng: str, base: str, wheels: list[Path], torch_index: str | None,
          tag: str, quiet: bool) -> None:
    cmd = [eng, "build", "-f", str(image.dockerfile), "-t", f"{image.name}:{tag}",
           "-t", f"{image.name}:latest", "--build-arg", f"BASE_IMAGE={base}"]
    cmd += [a for k, v in image.args.items() for a in ("--build-arg", f"{k}={v}")]
    if image.target:
        cmd += ["--target", image.target]
    if torch_index is not None:
        cmd += ["--build-arg", f"TORCH_INDEX_URL={torch_index}"]
    if wheels and "podman" in Path(eng).name:
        # podman mounts folders into RUN steps; with docker, reach the torch index instead.
        mounts = [f"/wheels/{i}" for i in range(len(wheels))]
        for src, dst in zip(wheels, mounts):
            cmd += ["--volume", f"{src}:{dst}:ro"]
        cmd += ["--build-arg", "PIP_FIND_LINKS=" + " ".join(mounts)]
    if "podman" in Path(eng).name:
        cmd += ["--jobs", "1"]  # one stage at a time: the CI machines have two cores
    cmd.append(str(ROOT))
    out = subprocess.DEVNULL if quiet else None
    subprocess.run(cmd, check=True, stdout=out)


def build_all(base: str | None = None, only: list[str] | None = None, quiet: bool = False,
              torch_index: str | None = None) -> dict[str, str]:
    """Builds what is missing of skaffold.yaml's images; returns name -> tagged reference."""
    wanted = [i for i in images() if not only or i.name in only]
    return ensure(wanted, base, quiet, torch_index)


def ensure(wanted: list[Image], base: str | None = None, quiet: bool = False,
           torch_index: str | None = None) -> dict[str, str]:
    """Builds each image unless one with its content tag exists; returns name -> reference."""
    eng = engine()
    base = base or os.environ.get("BASE_IMAGE") or PUBLIC_BASE
    base_id = image_id(eng, base) or base
    wheels = local_wheels()
    if torch_index is None and any(any(w.glob("torch-*.whl")) for w in wheels):
        torch_index = ""  # torch's index need not be reached (nor waited for): a wheel is here
    refs = {}
    for image in wanted:
        extra = {"TORCH_INDEX_URL": torch_index} if torch_index is not None else {}
        tag = content_tag(image, base_id, extra)
        ref = f"{image.name}:{tag}"
        if image_id(eng, ref):
            print(f"{ref}: up to date", flush=True)
        else:
            start = time.monotonic()
            build(image, eng, base, wheels, torch_index, tag, quiet)
            print(f"{ref}: built in {time.monotonic() - start:.0f} s", flush=True)
            untag_superseded(eng, image.name, tag)
        refs[image.name] = ref
    return refs


def untag_superseded(eng: str, name: str, tag: str) -> None:
    """Drops the image's older content tags, so storage holds one build per part (their
    layers stay while a newer build shares them: the build cache is kept)."""
    done = subprocess.run([eng, "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                           f"reference={name}"], capture_output=True, text=True)
    old = [r for r in done.stdout.split() if r.rsplit(":", 1)[-1] not in (tag, "latest")
           and r.rsplit(":", 1)[0].rsplit("/", 1)[-1] == name]
    if old:
        subprocess.run([eng, "rmi", *old], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("images", nargs="*", help="image names (default: all)")
    ap.add_argument("--base", help=f"base image (default $BASE_IMAGE or {PUBLIC_BASE}); "
                    f"`make base-image` builds {LOCAL_BASE} where no registry is reachable")
    ap.add_argument("--torch-index", help="TORCH_INDEX_URL build arg ('' for none)")
    ap.add_argument("--quiet", action="store_true", help="hide the engine's build output")
    a = ap.parse_args()
    refs = build_all(a.base, a.images, a.quiet, a.torch_index)
    print("\n".join(refs.values()))


if __name__ == "__main__":
    main()
