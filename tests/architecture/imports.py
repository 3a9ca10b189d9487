"""The modules a Python file imports, read off its syntax tree (nothing is imported):
what the arrows test and the image checks hold the parts to."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_modules(f: Path) -> set[str]:
    """Absolute imports only (`from . import x` stays within the file's own package)."""
    found = set()
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def top_level_imports(files) -> set[str]:
    return {m.split(".")[0] for f in files for m in imported_modules(f)}
