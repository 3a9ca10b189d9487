"""skaffold.yaml: valid for its apiVersion, one config per deployable whose
`requires:` exist, Dockerfiles that exist, manifests that render, and only images
that some artifact builds (or pinned public ones)."""

from __future__ import annotations

import copy
import os

import pytest

from tests.k8s import manifest_checks as m
from tests.k8s import skaffold_checks as s
from tests.k8s.image_checks import RUNTIME_PACKAGES, Dockerfile
from tests.k8s.parts import PARTS, REPO, render

CONFIGS = s.load()


def test_schema():
    if not s.SCHEMAS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Skaffold's schemas are missing: {s.SCHEMAS}")
        pytest.skip(f"no {s.SCHEMAS} beside the repository (CI has it)")
    assert {c["apiVersion"] for c in CONFIGS} <= {"skaffold/v4beta13", "skaffold/v4beta14"}
    assert s.check_schema(CONFIGS) == []
    # With each profile applied, too (prod patches the build section).
    for profile in s.profiles(CONFIGS):
        views = [s.profile_view(c, profile) for c in CONFIGS]
        assert s.check_schema(views) == [], profile


def test_schema_catches_a_typo():
    if not s.SCHEMAS.is_dir():
        pytest.skip(f"no {s.SCHEMAS}")
    broken = copy.deepcopy(CONFIGS)
    broken[1]["build"]["artifacts"][0]["dockerfle"] = "x"
    assert any("dockerfle" in p for p in s.check_schema(broken))


def test_one_config_per_deployable():
    configs = s.by_name(CONFIGS)
    for part in PARTS.values():
        (artifact,) = s.artifacts(configs[part.name])
        assert artifact["image"] == part.image
        assert artifact["docker"]["dockerfile"] == part.dockerfile
    assert {"infra", s.ROOT_CONFIG} <= set(configs)


def test_requires():
    assert s.check_requires(CONFIGS) == []


@pytest.mark.parametrize("breakage, words", [
    (lambda c: c[1].setdefault("requires", []).append({"configs": ["databse"]}), "databse"),
    (lambda c: s.by_name(c)["infra"].setdefault("requires", []).append({"configs": ["ui"]}), "cycle"),
    (lambda c: s.by_name(c)[s.ROOT_CONFIG]["requires"][0]["configs"].remove("ui"), "does not bring up"),
])
def test_broken_requires_fail(breakage, words):
    broken = copy.deepcopy(CONFIGS)
    breakage(broken)
    assert any(words in p for p in s.check_requires(broken))


def test_artifacts():
    assert s.check_artifacts(CONFIGS) == []
    broken = copy.deepcopy(CONFIGS)
    s.by_name(broken)["data"]["build"]["artifacts"][0]["docker"]["dockerfile"] = "services/dta/Dockerfile"
    assert any("does not exist" in p for p in s.check_artifacts(broken))


def image_problems(configs, name, profile):
    """A config's manifests under a profile: what does not render, or uses an image
    that neither it nor a config it requires builds (public images must be pinned)."""
    view = s.profile_view(s.by_name(configs)[name], profile)
    built = {a["image"] for n in s.requirements_of(configs, name)
             for a in s.artifacts(s.profile_view(s.by_name(configs)[n], profile))}
    problems = []
    for path in s.manifest_paths(view):
        for image in sorted(m.images(render(REPO / path))):
            if image not in built and not m.is_pinned_third_party(image):
                problems.append(f"{name} ({profile}): {image} is built by no artifact it requires")
    return problems


@pytest.mark.parametrize("profile", s.profiles(CONFIGS))
@pytest.mark.parametrize("name", [c["metadata"]["name"] for c in CONFIGS])
def test_config_renders_with_built_images(name, profile):
    view = s.profile_view(s.by_name(CONFIGS)[name], profile)
    if name != s.ROOT_CONFIG:
        assert s.manifest_paths(view), f"{name} deploys nothing"
    assert image_problems(CONFIGS, name, profile) == []


def test_unbuilt_image_fails():
    broken = copy.deepcopy(CONFIGS)
    s.by_name(broken)["gateway"]["build"]["artifacts"][0]["image"] = "kubetune-gw"
    assert image_problems(broken, "gateway", None)
    assert not m.is_pinned_third_party("postgres:latest")
    assert not m.is_pinned_third_party("kubetune-data")


def test_dev_syncs_python_sources_the_image_holds():
    for part in PARTS.values():
        config = s.by_name(CONFIGS)[part.name]
        (artifact,) = s.artifacts(config)
        copied = Dockerfile.read(REPO / part.dockerfile).source_copies(
            artifact["docker"]["buildArgs"])
        rules = artifact["sync"]["manual"]
        assert rules, part.name
        for rule in rules:
            assert rule["src"].endswith("**/*.py") and rule["dest"] == "/app"
            assert rule["src"].split("/")[0] in copied, f"{part.name} syncs {rule['src']} it never copies"
        synced = {rule["src"].split("/")[0] for rule in rules}
        python_sources = [c for c in copied if c == "gen" or c in RUNTIME_PACKAGES or c == part.package]
        assert [c for c in python_sources if c not in synced] == [], f"{part.name}: copied but never synced"
        assert artifact["docker"]["buildArgs"]["RELOAD"] == "true"
        (prod,) = s.artifacts(s.profile_view(config, "prod"))
        assert "sync" not in prod and prod["docker"]["buildArgs"]["RELOAD"] == "false"
