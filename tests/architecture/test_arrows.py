"""The parts call each other only along the arrows of the README's diagram, held here as
a table: a part that imports another service's code, or builds a stub or reads the
address of a part the table does not name for it, fails; so does a diagram that drifts
from the table. The arrows only go down: no two services call each other."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.architecture.imports import imported_modules, top_level_imports

REPO = Path(__file__).resolve().parents[2]

# Each part's code: a folder, less the folders of parts nested in it.
PARTS = {
    "data": "services/data",
    "tuning": "services/tuning",
    "worker": "services/tuning/worker",
    "tracking": "services/tracking",
    "registry": "services/registry",
    "gateway": "gateway",
    "ui": "ui",
    "cli": "cli",
}
# part -> the parts it calls over gRPC: the README diagram's `-->|gRPC|` arrows.
ARROWS = {
    "data": set(),
    "tuning": {"data", "tracking"},
    "worker": {"data", "tracking"},
    "tracking": set(),
    "registry": set(),
    "gateway": {"data", "tuning", "tracking", "registry"},
    "ui": {"gateway"},
    "cli": {"gateway"},
}
# part -> the `services.*` packages its code may import: the shared library and its own.
IMPORTS = {
    "data": {"common", "data"},
    "tuning": {"common", "tuning"},
    "worker": {"common", "tuning"},  # the worker is tuning's: it shares the Optuna store
    "tracking": {"common", "tracking"},
    "registry": {"common", "registry"},
    "gateway": {"common"},
    # Nothing from services: what they share with the services is in kubetune_common/ and
    # hyperparams/, and the search space's rules are asked of the service (validate_only).
    "ui": set(),
    "cli": set(),
}
STUBS = {"DataServiceStub": "data", "TuningServiceStub": "tuning", "TrackingServiceStub": "tracking",
         "RegistryServiceStub": "registry", "GatewayStub": "gateway"}
CLIENTS = {"DataClient": "data", "TuningClient": "tuning", "TrackingClient": "tracking",
           "RegistryClient": "registry"}
NODES = {"DATA": "data", "TUN": "tuning", "W": "worker", "TRK": "tracking", "REG": "registry", "GW": "gateway",
         "UI": "ui", "CLI": "cli"}


def part_files(root: Path, part: str) -> list[Path]:
    folder = root / PARTS[part]
    nested = [root / p for other, p in PARTS.items() if other != part and (root / p).is_relative_to(folder)]
    return [f for f in sorted(folder.rglob("*.py")) if not any(f.is_relative_to(n) for n in nested)]


def found_arrows(root: Path) -> dict[str, dict[str, set[str]]]:
    """part -> {"imports": services packages imported, "calls": parts called}, read off the code."""
    out = {}
    for part in PARTS:
        imports, calls = set(), set()
        for f in part_files(root, part):
            tree = ast.parse(f.read_text(), str(f))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    names = []
                for name in names:
                    bits = name.split(".")
                    if bits[0] == "services" and len(bits) > 1:
                        imports.add(bits[1])
                if isinstance(node, (ast.Name, ast.Attribute)):
                    word = node.id if isinstance(node, ast.Name) else node.attr
                    if word in STUBS:
                        calls.add(STUBS[word])
                    elif word in CLIENTS:
                        calls.add(CLIENTS[word])
                if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "address_of" and node.args
                        and isinstance(node.args[0], ast.Constant)):
                    calls.add(node.args[0].value)
        calls.discard(part)
        out[part] = {"imports": imports - {"__init__"}, "calls": calls}
    return out


def stray(root: Path) -> list[str]:
    problems = []
    for part, seen in found_arrows(root).items():
        for name in sorted(seen["imports"] - IMPORTS[part]):
            problems.append(f"{part} imports services.{name}")
        for name in sorted(seen["calls"] - ARROWS[part]):
            problems.append(f"{part} calls {name}, an arrow the diagram does not draw")
    return problems


def diagram_arrows(readme: str) -> dict[str, set[str]]:
    out = {part: set() for part in PARTS}
    for a, b in re.findall(r"^\s*(\w+)(?:\[[^\]]*\])?\s*-->\|gRPC\|\s*(\w+)", readme, re.MULTILINE):
        out[NODES[a]].add(NODES[b])
    return out


def test_code_follows_the_table():
    assert stray(REPO) == []


def test_every_arrow_of_the_table_is_used():
    seen = found_arrows(REPO)
    assert {p: seen[p]["calls"] for p in PARTS} == ARROWS


def test_readme_draws_the_table():
    assert diagram_arrows((REPO / "README.md").read_text()) == ARROWS


def test_no_two_parts_call_each_other():
    assert [(a, b) for a in ARROWS for b in ARROWS[a] if a in ARROWS.get(b, ())] == []


@pytest.mark.parametrize("planted, problem", [
    ("from services.tuning import summary\n", "tracking imports services.tuning"),
    ("from kubetune.tuning.v1.tuning_pb2_grpc import TuningServiceStub\nTuningServiceStub\n",
     "tracking calls tuning"),
    ("from kubetune_common.config import address_of\nx = address_of(\"tuning\")\n", "tracking calls tuning"),
])
def test_a_stray_arrow_is_caught(tmp_path, planted, problem):
    for part in PARTS.values():
        shutil.copytree(REPO / part, tmp_path / part, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    (tmp_path / "services/tracking/stray.py").write_text(planted)
    assert any(p.startswith(problem) for p in stray(tmp_path))


def test_a_diagram_missing_an_arrow_is_caught():
    readme = (REPO / "README.md").read_text().replace("TUN -->|gRPC| TRK", "TUN --- TRK")
    assert diagram_arrows(readme) != ARROWS


# One service shape: the files of a service that translate (gRPC, NATS, protobuf, a
# backend's API) are these; every other file is the domain, and imports no grpc, no
# nats and no protobuf (the generated kubetune.* messages, google.protobuf), nor reaches
# into the files that translate to and from them (messages.py, servicer.py, adapters.py):
# plain data in and out (records.py).
EDGES = {"__init__.py", "__main__.py", "app.py", "config.py", "servicer.py", "adapters.py", "messages.py",
         "store.py", "sql_store.py", "mlflow_store.py",
         "outbox.py"}  # the registry's: derives its events from what MLflow holds
FORBIDDEN = ("grpc", "grpc_health", "grpc_reflection", "nats", "kubetune", "google")
TRANSLATING = ("messages", "servicer", "adapters")


def wire_imports(f: Path) -> set[str]:
    names = set(imported_modules(f))
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return ({m for m in names if m.split(".")[0] in FORBIDDEN}
            | {m for m in names if m.startswith("services.") and m.split(".")[-1] in TRANSLATING})


def domain_files(root: Path) -> list[Path]:
    return [f for part in ("data", "tuning", "worker", "tracking", "registry") for f in part_files(root, part)
            if f.name not in EDGES]


def test_every_services_domain_takes_plain_data():
    wired = {str(f.relative_to(REPO)): sorted(wire_imports(f)) for f in domain_files(REPO)}
    assert {f: w for f, w in wired.items() if w} == {}


def test_a_domain_importing_protobuf_is_caught(tmp_path):
    shutil.copytree(REPO / "services", tmp_path / "services", ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    (tmp_path / "services/tuning/studies.py").write_text("from kubetune.tuning.v1 import tuning_pb2 as pb\n")
    (tmp_path / "services/data/catalog.py").write_text("import grpc\n")
    (tmp_path / "services/tuning/space.py").write_text("from services.tuning.messages import param_from_pb\n")
    (tmp_path / "services/tracking/recorder.py").write_text("from services.tracking import messages\n")
    wired = {f.relative_to(tmp_path).as_posix(): wire_imports(f) for f in domain_files(tmp_path)}
    assert wired["services/tuning/studies.py"] == {"kubetune.tuning.v1", "kubetune.tuning.v1.tuning_pb2"}
    assert wired["services/data/catalog.py"] == {"grpc"}
    assert wired["services/tuning/space.py"] == {"services.tuning.messages"}
    assert wired["services/tracking/recorder.py"] == {"services.tracking.messages"}


@pytest.mark.parametrize("package", ["hyperparams", "kubetune_common"])
def test_what_the_ui_and_the_cli_share_with_services_needs_no_service(package):
    """hyperparams/ (the search space's names) and kubetune_common/ (settings, errors,
    channels, subjects, logging, table and metric conventions) are what the UI and the
    CLI share with the services: they import no service, and no optuna (the UI image has
    none)."""
    imported = top_level_imports((REPO / package).rglob("*.py"))
    assert imported and not imported & {"services", "optuna", "ui", "cli", "gateway"}, imported


# What the services install beyond the base dependencies (pyproject's extras): the UI and
# the CLI load without any of it.
SERVICE_DEPENDENCIES = ("services", "optuna", "sklearn", "torch", "lightning", "mlflow", "boto3", "pandas",
                        "pyarrow", "sqlalchemy", "psycopg2", "psycopg")


def test_the_ui_and_the_cli_load_without_the_services():
    script = f"""
import importlib, pkgutil, sys
import ui, cli
for pkg in (ui, cli):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({SERVICE_DEPENDENCIES!r})))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
