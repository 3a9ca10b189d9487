"""What the one part Dockerfile does, read without a Docker engine: its stages, the extras
it installs, torch or not, the sources it copies, the module it runs, per part's build args. Plus the two
steps that stand in for a build: resolving the image's dependency set with
`pip install --dry-run --report`, and importing the part in an environment that holds
only that set."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path

from services.common import lockfile
from tests.architecture.imports import imported_modules, top_level_imports
from tests.k8s.parts import DOCKERFILE, REPO, Part

ENTRYPOINT_SCRIPT = REPO / "k8s" / "images" / "entrypoint.sh"
TORCH_FAMILY = ("torch", "lightning", "pytorch-lightning", "torchvision", "triton")


@dataclass
class Dockerfile:
    path: Path
    stages: list[list[str]] = field(default_factory=list)  # instructions per FROM
    args: dict[str, str] = field(default_factory=dict)  # ARG defaults, any stage

    @classmethod
    def read(cls, path: Path) -> "Dockerfile":
        text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continued lines
        df = cls(path)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            word = line.split()[0].upper()
            if word == "FROM":
                df.stages.append([])
            if word == "ARG" and "=" in line:
                k, _, v = line[4:].strip().partition("=")
                df.args.setdefault(k, v.strip('"'))
            if df.stages:
                df.stages[-1].append(line)
        return df

    def final(self, word: str) -> list[str]:
        return [line[len(word):].strip() for line in self.stages[-1] if line.upper().startswith(word + " ")]

    def all(self, word: str) -> list[str]:
        return [line[len(word):].strip() for s in self.stages for line in s if line.upper().startswith(word + " ")]

    def env(self) -> dict[str, str]:
        out = {}
        for spec in self.final("ENV"):
            for k, v in re.findall(r"(\w+)=(\S+)", spec):
                out[k] = v
        return out

    def source_copies(self, args: dict[str, str] | None = None) -> list[str]:
        """Repository paths the final stage copies into /app (the part's code), with the
        build args (else the ARG defaults) put in."""
        values = {**self.args, **(args or {})}
        out = []
        for spec in self.final("COPY"):
            spec = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], m[0]), spec)
            words = [w for w in spec.split() if not w.startswith("--")]
            if "--from" in spec or not words[-1].startswith("/app"):
                continue
            out += words[:-1]
        return out

    def pip_installs(self) -> list[str]:
        return [r for r in self.all("RUN") if "pip install" in r]


def runtime_packages() -> tuple[str, ...]:
    """The top-level packages of this repository that the parts' code imports (services,
    hyperparams, kubetune_common...), less the parts' own (gateway, ui: the PACKAGE arg)
    and the generated code (copied as gen): every image copies them, every dev sync
    follows them, and a new one is caught here before an image fails to start."""
    own = {"gateway", "ui", "kubetune"}
    found = top_level_imports(f for top in ("services", "gateway", "ui") for f in (REPO / top).rglob("*.py"))
    return tuple(sorted(n for n in found - own if (REPO / n / "__init__.py").is_file()))


RUNTIME_PACKAGES = runtime_packages()


def check_dockerfile(path: Path | None = None) -> list[str]:
    """The shape every part's image shares. `path`: a copy to check instead."""
    path = path or REPO / DOCKERFILE
    if not path.is_file():
        return [f"{DOCKERFILE} does not exist"]
    problems = []
    df = Dockerfile.read(path)
    where = DOCKERFILE
    if len(df.stages) < 2:
        problems.append(f"{where}: one stage; dependencies belong in a builder stage")
    base = df.args.get("BASE_IMAGE", "")
    if not re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base):
        problems.append(f"{where}: base {base!r} is not a slim Python pinned to an exact version")
    users = df.final("USER")
    if not users or users[-1] in ("0", "root"):
        problems.append(f"{where}: the final stage does not switch to a non-root USER")
    elif users[-1] != "10001":
        problems.append(f"{where}: USER {users[-1]} differs from runAsUser 10001 in the manifests")
    installs = df.pip_installs()
    extras = [r for r in installs if '".[${EXTRAS}]"' in r]
    if not extras:
        problems.append(f"{where}: does not install the part's extras (EXTRAS)")
    torch = [r for r in installs if re.search(r"\btorch\b", r) and "EXTRAS" not in r]
    if not torch or "TORCH" not in torch[0]:
        problems.append(f"{where}: torch is not installed first, on its own, when TORCH is true")
    elif extras and installs.index(torch[0]) > installs.index(extras[0]):
        problems.append(f"{where}: torch is installed after the extras (a CUDA build could come in)")
    for r in torch + extras:
        if "-c lock.txt" not in r:
            problems.append(f"{where}: `{r[:60]}...` installs without the lock (-c lock.txt)")
    if any("--index-url" in r.replace("--extra-index-url", "") for r in installs):
        problems.append(f"{where}: an --index-url replaces PyPI; torch's index must be an extra one")
    if "cpu" not in df.args.get("TORCH_INDEX_URL", ""):
        problems.append(f"{where}: TORCH_INDEX_URL should default to the CPU wheels")
    env = df.env()
    if env.get("KUBETUNE_MODULE") != "${MODULE}":
        problems.append(f"{where}: runs {env.get('KUBETUNE_MODULE')!r}, not the MODULE arg")
    if env.get("HOME") != "/tmp":
        problems.append(f"{where}: HOME is {env.get('HOME')!r}, not /tmp (the writable volume)")
    if df.final("ENTRYPOINT") != ['["kubetune-entrypoint"]'] or not ENTRYPOINT_SCRIPT.exists():
        problems.append(f"{where}: ENTRYPOINT is not k8s/images/entrypoint.sh")
    copies = df.source_copies({"PACKAGE": "${PACKAGE}"})  # the arg itself, not its default
    for needed in ("gen", *RUNTIME_PACKAGES, "${PACKAGE}"):
        if needed not in copies:
            problems.append(f"{where}: does not copy {needed} into /app")
    if not any("requirements/lock.txt" in c for c in df.all("COPY")):
        problems.append(f"{where}: does not copy the lock (requirements/lock.txt)")
    return problems


def check_part(part: Part, args: dict[str, str]) -> list[str]:
    """A part's build args (skaffold.yaml's) against what the part needs."""
    given = {k: v for k, v in args.items() if k != "RELOAD"}
    problems = [f"{part.name}: build arg {k}={given.get(k)!r}, should be {v!r}"
                for k, v in part.build_args().items() if given.get(k) != v]
    problems += [f"{part.name}: unexpected build arg {k}={v!r}" for k, v in given.items()
                 if k not in part.build_args()]
    copies = Dockerfile.read(REPO / DOCKERFILE).source_copies(args)
    for src in copies:
        if not (REPO / src).exists():
            problems.append(f"{part.name}: the image copies {src}, which does not exist")
    top = part.module.split(".")[0]
    if top not in copies:
        problems.append(f"{part.name}: the image does not copy {top}, where {part.module} lives")
    return problems


def dockerignored(paths: list[str]) -> list[str]:
    """Paths a Dockerfile copies that .dockerignore leaves out (top-level entries;
    `!` re-includes)."""
    rules = [r.strip() for r in (REPO / ".dockerignore").read_text().splitlines()
             if r.strip() and not r.startswith("#")]
    out = []
    for p in paths:
        excluded = False
        for r in rules:
            neg = r.startswith("!")
            pattern = r.lstrip("!")
            if p == pattern or p.startswith(pattern + "/"):
                excluded = not neg
        if excluded:
            out.append(p)
    return out


# ---------------------------------------------------------------- without Docker


def build_dir(tmp: Path) -> Path:
    """What the deps stage sees: pyproject.toml, an empty README and gen, no sources."""
    shutil.copy(REPO / "pyproject.toml", tmp / "pyproject.toml")
    (tmp / "README.md").touch()
    (tmp / "gen").mkdir(exist_ok=True)
    return tmp


def empty_env(tmp: Path, torch_version: str | None) -> Path:
    """A venv without pip. With torch_version, it holds a stand-in torch dist-info, as
    the Dockerfile's first step leaves torch installed before the extra's step."""
    env = tmp / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    if torch_version:
        site = Path(subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
        info = site / f"torch-{torch_version}+cpu.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {torch_version}+cpu\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
    return python


def resolve(part: Part, tmp: Path) -> dict[str, str]:
    """The image's dependency set, as the Dockerfile's install step resolves it (the
    lock as constraints): name -> version of everything pip would install (one pip call)."""
    torch_version = lockfile.read()[1]["torch"] if part.torch else None
    python = empty_env(tmp, torch_version)
    src = tmp / "build"
    src.mkdir()
    build_dir(src)
    report = tmp / "report.json"
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run", "--quiet",
           "--disable-pip-version-check", "--report", str(report), "-c", str(lockfile.LOCK),
           f".[{part.extras}]"]
    done = subprocess.run(cmd, cwd=src, capture_output=True, text=True,
                          env={**os.environ, "PIP_NO_INPUT": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"pip could not resolve {part.image}:\n{done.stderr[-4000:]}")
    data = json.loads(report.read_text())
    pins = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in data["install"]}
    pins.pop("kubetune", None)  # the Dockerfile uninstalls it: the sources go on PYTHONPATH
    return pins


def source_tree(part: Part, dest: Path) -> Path:
    """/app as the Dockerfile lays it out: only the paths it copies."""
    for src in Dockerfile.read(REPO / DOCKERFILE).source_copies(part.build_args()):
        target = dest / src
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / src, target)
    return dest


def entry_modules(part: Part) -> list[str]:
    """What the part's `__main__` imports (read, not run: importing a `__main__` may
    start the server); until it exists, every module of the part, so an import of
    torch in one still shows."""
    pkg = REPO / part.module.replace(".", "/")
    main = pkg / "__main__.py"
    if main.exists():
        return sorted(imported_modules(main))
    mods = []
    for f in sorted(pkg.glob("*.py")):
        mods.append(part.module if f.name == "__init__.py" else f"{part.module}.{f.stem}")
    return mods


def resolve_requirements(requirements: Path, tmp: Path) -> dict[str, str]:
    """The same dry run for an image that installs a requirements file (MLflow's)."""
    python = empty_env(tmp, None)
    report = tmp / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run",
                    "--quiet", "--disable-pip-version-check", "--report", str(report),
                    "-r", str(requirements)], check=True, capture_output=True, text=True)
    data = json.loads(report.read_text())
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in data["install"]}


def deps_only_env(pins: dict[str, str], tmp: Path) -> Path:
    """A venv holding exactly `pins` (the image's resolved set) and nothing else."""
    env = tmp / "image-env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--disable-pip-version-check", "--no-deps",
                    *[f"{n}=={v}" for n, v in sorted(pins.items())]],
                   check=True, capture_output=True, text=True)
    return python


def import_in(python: Path, app: Path, modules: list[str]) -> subprocess.CompletedProcess:
    """Import the modules as the image would run them: /app and /app/gen on the path,
    nothing from the developer's environment."""
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n" \
           "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'lightning')))"
    return subprocess.run([str(python), "-s", "-c", code, *modules], cwd=app, capture_output=True,
                          text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{app}:{app}/gen",
                               "HOME": str(app)})
