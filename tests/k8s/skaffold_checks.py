"""Checks of skaffold.yaml: its schema, the configs' `requires:` graph, the
artifacts' Dockerfiles, and that every config's manifests render and use only
images some artifact builds. Each returns a list of problems."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import yaml

from tests.k8s.parts import REPO

SKAFFOLD = REPO / "skaffold.yaml"
SCHEMAS = REPO.parent / "shared" / "schemas"
ROOT_CONFIG = "kubetune"


def load(path: Path = SKAFFOLD) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_name(configs: list[dict]) -> dict[str, dict]:
    return {c["metadata"]["name"]: c for c in configs}


def schema_file(api_version: str) -> Path:
    return SCHEMAS / f"skaffold-{api_version.split('/')[-1]}.json"


def check_schema(configs: list[dict]) -> list[str]:
    problems = []
    for i, c in enumerate(configs):
        api = c.get("apiVersion", "")
        path = schema_file(api)
        if not path.exists():
            problems.append(f"document {i}: no schema for apiVersion {api!r} in {SCHEMAS}")
            continue
        validator = jsonschema.Draft7Validator(json.loads(path.read_text()))
        for error in validator.iter_errors(c):
            where = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"document {i} ({c.get('metadata', {}).get('name')}): {where}: {error.message}")
    return problems


def check_requires(configs: list[dict]) -> list[str]:
    """Names are unique, every `requires` names a config of this file, the graph has
    no cycle (Skaffold refuses one), and the root config brings up every other."""
    problems = []
    names = [c.get("metadata", {}).get("name") for c in configs]
    if None in names:
        problems.append("a config has no metadata.name, so `skaffold dev -m` cannot pick it")
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        problems.append(f"config names used twice: {sorted(dupes)}")
    graph = {}
    for c in configs:
        name = c.get("metadata", {}).get("name")
        deps = []
        for req in c.get("requires", []):
            if "path" in req or "git" in req:
                problems.append(f"{name}: requires another file; keep every config in skaffold.yaml")
            for dep in req.get("configs", []):
                if dep not in names:
                    problems.append(f"{name}: requires {dep!r}, which no config is named")
                deps.append(dep)
        graph[name] = deps

    def closure(name, path=()):
        if name in path:
            problems.append(f"requires cycle: {' -> '.join(path + (name,))}")
            return set()
        out = set()
        for dep in graph.get(name, []):
            out |= {dep} | closure(dep, path + (name,))
        return out

    for name in graph:
        closure(name)
    if ROOT_CONFIG not in graph:
        problems.append(f"no root config {ROOT_CONFIG!r} for a plain `skaffold dev`")
    elif not problems:
        missing = set(graph) - {ROOT_CONFIG} - closure(ROOT_CONFIG)
        if missing:
            problems.append(f"{ROOT_CONFIG} does not bring up {sorted(missing)}")
    return problems


def requirements_of(configs: list[dict], name: str) -> set[str]:
    """The config and every config it needs, transitively."""
    graph = {c["metadata"]["name"]: [d for r in c.get("requires", []) for d in r.get("configs", [])]
             for c in configs}
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += graph.get(n, [])
    return seen


def artifacts(config: dict) -> list[dict]:
    return (config.get("build") or {}).get("artifacts") or []


def check_artifacts(configs: list[dict]) -> list[str]:
    problems = []
    images = [a["image"] for c in configs for a in artifacts(c)]
    for image in {i for i in images if images.count(i) > 1}:
        problems.append(f"image {image} is built by two artifacts")
    for c in configs:
        for a in artifacts(c):
            context = REPO / a.get("context", ".")
            dockerfile = context / (a.get("docker") or {}).get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{c['metadata']['name']}: {a['image']}'s Dockerfile {dockerfile} does not exist")
    return problems


def apply_patches(doc: dict, patches: list[dict]) -> dict:
    """Skaffold profile patches (JSON Patch add/replace/remove), enough to see what a
    profile makes of a config."""
    doc = copy.deepcopy(doc)
    for p in patches:
        *parents, last = [part for part in p["path"].split("/")[1:]]
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        key = int(last) if isinstance(node, list) else last
        if p["op"] == "remove":
            del node[key]
        elif p["op"] in ("add", "replace"):
            if p["op"] == "replace" and (key not in node if isinstance(node, dict) else key >= len(node)):
                raise KeyError(f"replace of a missing {p['path']}")
            node[key] = p["value"]
        else:
            raise ValueError(f"unsupported patch op {p['op']}")
    return doc


def profile_view(config: dict, profile: str | None) -> dict:
    """The config as Skaffold sees it with one profile active (None: no profile)."""
    if profile is None:
        return config
    for p in config.get("profiles", []):
        if p["name"] == profile:
            view = apply_patches(config, p.get("patches", []))
            for key in ("build", "manifests", "deploy"):
                if key in p:
                    view[key] = p[key]
            return view
    return config


def profiles(configs: list[dict]) -> list[str | None]:
    return [None] + sorted({p["name"] for c in configs for p in c.get("profiles", [])})


def manifest_paths(config: dict) -> list[str]:
    return ((config.get("manifests") or {}).get("kustomize") or {}).get("paths") or []
