"""The decision core (modules directly in app/) imports no faust, kafka or redis; the edges
are the packages app/io/ and app/cli/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("faust", "mode", "kafka", "aiokafka", "redis", "prometheus_client")


def core_modules() -> list[Path]:
    return sorted((ROOT / "app").glob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_exist() -> None:
    names = {p.stem for p in core_modules()}
    assert {
        "engine",
        "pipeline",
        "decode",
        "store",
        "readiness",
        "arbitration",
        "decisions",
        "referee",
        "models",
        "policy",
        "catalog",
        "replay",
    } <= names


def test_core_source_imports_no_io_library() -> None:
    offenders = {p.name: sorted(imported_roots(p) & set(FORBIDDEN)) for p in core_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_does_not_pull_io_libraries_in_transitively() -> None:
    modules = ", ".join(f"app.{p.stem}" for p in core_modules())
    code = (
        f"import sys, importlib\nfor m in '{modules}'.split(', '): importlib.import_module(m)\n"
        f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({FORBIDDEN!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
