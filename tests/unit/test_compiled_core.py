"""The compiled core (deploy/compile_core.py): used only while it matches the sources, and
deciding exactly as the pure-Python one does."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import app
from app import MANIFEST, compiled_core, sources_digest

ROOT = Path(__file__).resolve().parents[2]
TACT = [sys.executable, "-m", "app.cli"]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout's sources and a compiled core built from them."""
    (tmp_path / "app").mkdir()
    (tmp_path / "schemas").mkdir()
    (tmp_path / "app" / "engine.py").write_text("x = 1\n")
    (tmp_path / "schemas" / "types.py").write_text("y = 2\n")
    built = tmp_path / ".compiled"
    (built / "app").mkdir(parents=True)
    (built / "app" / f"engine{SUFFIX}").write_bytes(b"\x7fELF...")
    manifest = {
        "sources": sources_digest(tmp_path),
        "suffix": SUFFIX,
        "files": {f"app/engine{SUFFIX}": 7},
    }
    (built / MANIFEST).write_text(json.dumps(manifest))
    return tmp_path


def test_a_core_compiled_from_these_sources_is_used(checkout: Path) -> None:
    assert compiled_core(checkout, {}) == (checkout / ".compiled", "compiled")


@pytest.mark.parametrize("path", ["app/engine.py", "schemas/types.py", "app/cli/new.py"])
def test_an_edited_source_sends_tact_back_to_pure_python(checkout: Path, path: str) -> None:
    (checkout / path).parent.mkdir(exist_ok=True)
    (checkout / path).write_text("x = 3\n")
    built, why = compiled_core(checkout, {})
    assert built is None and "sources changed" in why


def test_an_editors_lock_file_is_no_source(checkout: Path) -> None:
    (checkout / "app" / ".#engine.py").symlink_to("root@host.1234:1700000000")  # dangling
    assert compiled_core(checkout, {})[0] is not None


@pytest.mark.parametrize("size", [None, 3])
def test_a_core_missing_a_file_or_with_one_cut_short_is_not_used(
    checkout: Path, size: int | None
) -> None:
    library = checkout / ".compiled" / "app" / f"engine{SUFFIX}"
    if size is None:
        library.unlink()
    else:
        library.write_bytes(library.read_bytes()[:size])
    built, why = compiled_core(checkout, {})
    assert built is None and why.startswith(f"incomplete (app/engine{SUFFIX}")


def test_pure_python_is_chosen_when_asked_not_built_or_built_for_another_python(
    checkout: Path,
) -> None:
    assert compiled_core(checkout, {"TACT_PURE_PYTHON": "1"}) == (None, "TACT_PURE_PYTHON is set")
    assert compiled_core(checkout, {"TACT_PURE_PYTHON": "0"})[0] is not None
    manifest = checkout / ".compiled" / MANIFEST
    elsewhere = {**json.loads(manifest.read_text()), "suffix": ".cpython-27-sparc.so"}
    manifest.write_text(json.dumps(elsewhere))
    assert "another Python or machine" in compiled_core(checkout, {})[1]
    manifest.write_text("{not json")
    assert "unreadable" in compiled_core(checkout, {})[1]
    manifest.unlink()
    assert compiled_core(checkout, {}) == (None, "not compiled (make install compiles it)")


def core_in(env: dict[str, str]) -> str:
    """What a tact process with `env` runs: its CORE_BUILD, and the kinds of file its modules
    of the compiled core (all that .compiled/ holds) were loaded from."""
    code = (
        "import app, importlib, pathlib\n"
        "names = {p.name.split('.')[0] for p in pathlib.Path('.compiled/app').iterdir()}\n"
        "files = [importlib.import_module('app.' + n).__file__ for n in sorted(names)]\n"
        "print(app.CORE_BUILD, '|', len(files), sorted({f.rsplit('.')[-1] for f in files}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def _core_modules() -> list[str]:
    """CORE of deploy/compile_core.py, read without running the script (it sets
    TACT_PURE_PYTHON in its process: every later subprocess of a test would run pure)."""
    tree = ast.parse((ROOT / "deploy" / "compile_core.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "CORE" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("deploy/compile_core.py assigns no CORE")


def test_compiled_and_pure_python_cores_decide_byte_for_byte_alike(tmp_path: Path) -> None:
    """`make install` compiles the core, so the rest of the suite runs on it: this is where
    the pure-Python core is run too, on a whole stream, and compared."""
    pure = {**os.environ, "TACT_PURE_PYTHON": "1"}
    compiled = {k: v for k, v in os.environ.items() if k != "TACT_PURE_PYTHON"}
    assert (ROOT / ".compiled" / "app").is_dir(), "no compiled core: `make install` builds it"
    modules = len(_core_modules())
    assert core_in(pure) == f"pure Python: TACT_PURE_PYTHON is set | {modules} ['py']"
    assert core_in(compiled) == f"compiled (mypyc) | {modules} ['so']", (
        f"the compiled core is not in use ({app.CORE_BUILD}): `make install` builds it"
    )
    events, catalog = tmp_path / "events.jsonl", tmp_path / "catalog.jsonl"
    sample = ["sample", "--customers", "1500", "--events", str(events), "--catalog", str(catalog)]
    subprocess.run([*TACT, *sample], env=pure, cwd=ROOT, check=True, capture_output=True)
    for mode in ([], ["--learner"]):
        out: dict[str, list[bytes]] = {}
        for name, env in (("pure", pure), ("compiled", compiled)):
            actions = tmp_path / f"{name}.jsonl"
            replay = ["replay", str(events), "--catalog", str(catalog), "--out", str(actions)]
            subprocess.run(
                [*TACT, *replay, *mode], env=env, cwd=ROOT, check=True, capture_output=True
            )
            outcomes = actions.with_suffix(".outcomes.jsonl")
            out[name] = [actions.read_bytes(), outcomes.read_bytes()]
        assert out["pure"][0].count(b"\n") > 1000
        assert out["pure"] == out["compiled"], f"the cores decided differently ({mode})"


_INIT_CHECK = """
import dataclasses
from dataclasses import MISSING
from app.context import Context, Scored, Terms
from app.decisions import Decision
from app.readiness import Readiness

for cls in (Scored, Terms, Context, Decision, Readiness):
    fields = dataclasses.fields(cls)
    required = [f.name for f in fields if f.default is MISSING and f.default_factory is MISSING]
    values = {f.name: ("value of", f.name) for f in fields}
    for made in (cls(*values.values()), cls(**values)):  # in their order, and by name
        assert {f.name: getattr(made, f.name) for f in fields} == values, cls
    minimal, other = (cls(**{name: values[name] for name in required}) for _ in range(2))
    for f in fields:
        if f.default is not MISSING:
            assert getattr(minimal, f.name) == f.default, (cls, f.name)
        elif f.default_factory is not MISSING:
            assert getattr(minimal, f.name) == f.default_factory(), (cls, f.name)
            assert getattr(minimal, f.name) is not getattr(other, f.name), (cls, f.name)
print("ok")
"""


def test_written_out_dataclass_inits_set_every_field_with_its_default() -> None:
    """Scored, Terms, Context, Decision and Readiness write out their __init__ for the compiled core
    (the one dataclasses generates runs as Python): each must still take every field, in its
    order and by name, and give each left out its default (a new list each time). Checked on
    the pure-Python core, which does not check the values' types."""
    env = {**os.environ, "TACT_PURE_PYTHON": "1"}
    run = subprocess.run(
        [sys.executable, "-c", _INIT_CHECK], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
