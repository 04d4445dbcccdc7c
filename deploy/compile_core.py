"""Compile tact's decision core with mypyc into .compiled/ (`make install` runs this).

The compiled modules are the same source, typed as `mypy --strict` checks it, turned into C:
decisions come out byte for byte as the pure-Python ones do (a test replays a stream both
ways and compares). `app/__init__.py` puts .compiled/ in front of the package's own modules
only while its manifest matches the sources: after an edit, tact runs pure Python (and says
so) until the next `make install`. TACT_PURE_PYTHON=1 runs pure Python regardless.

Usage: python deploy/compile_core.py [--force]. Needs mypy and setuptools (the dev extras'
mypy[mypyc]), a C compiler and Python's headers; without them, or when the build fails, it
says why and leaves tact on pure Python (exit status 0: tact works either way).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import sysconfig
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["TACT_PURE_PYTHON"] = "1"  # this build never loads the modules it replaces

from app import COMPILED_GROUP, MANIFEST, compiled_core, sources_digest  # noqa: E402

# The hot path of a decision, by a profile of `tact replay` (README "Performance"). Modules that
# subclass pydantic models (policy, catalog, models) stay interpreted: mypyc compiles only
# classes it can lay out itself.
CORE = [
    "actions",
    "anyway",
    "arbitration",
    "attribution",
    "bandit",
    "codec",
    "context",
    "decisions",
    "decode",
    "distraction",
    "economics",
    "engine",
    "experiments",
    "guardrail",
    "holdout",
    "learning",
    "observe",
    "offers",
    "readiness",
    "referee",
    "replay",
    "sequencing",
    "terms",
    "timestamps",
]


def mypy_config() -> str:
    """mypy as `make typecheck` runs it (pyproject.toml's [tool.mypy]), except that typed
    third-party packages are not followed: mypyc keeps every function body it analyses, and
    River's and NumPy's bodies took mypy from 15 s to 6.5 minutes. Their values are plain
    Python objects to the compiled code anyway."""
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    skipped = [m for o in mypy.get("overrides", []) for m in o["module"]] + ["numpy.*", "redis.*"]
    return (
        f"[mypy]\nstrict = {mypy.get('strict', False)}\nplugins = {', '.join(mypy['plugins'])}\n"
        f"[mypy-{','.join(skipped)}]\nfollow_imports = skip\nignore_missing_imports = True\n"
    )


def unable() -> str | None:
    """Why this machine cannot compile the core, or None."""
    try:
        import mypyc.build  # noqa: F401
        import setuptools  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (the dev extras install mypy[mypyc])"
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({' '.join(cc) or 'cc'})"
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if not headers.is_file():
        return f"no {headers} (Python's development headers, e.g. python3-dev)"
    return None


def build(staging: Path) -> None:
    """Compile CORE into staging (the package tree, and the library the modules share)."""
    from mypyc.build import mypycify
    from setuptools import setup

    with tempfile.TemporaryDirectory(prefix="tact-compile-") as tmp:
        config = Path(tmp, "mypy.ini")
        config.write_text(mypy_config())
        # setuptools reads the project's pyproject.toml from the working directory, and older
        # ones refuse its license field: build from an empty one.
        here = os.getcwd()
        os.chdir(tmp)
        try:
            extensions = mypycify(
                ["--config-file", str(config), *(str(ROOT / "app" / f"{m}.py") for m in CORE)],
                opt_level="3",
                multi_file=True,  # C files the build compiles in parallel
                group_name=COMPILED_GROUP,
            )
            jobs = str(os.cpu_count() or 1)
            setup(
                name=COMPILED_GROUP,
                ext_modules=extensions,
                script_args=["-q", "build_ext", "--build-lib", str(staging), "-j", jobs],
            )
        finally:
            os.chdir(here)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="compile even when up to date")
    args = parser.parse_args(argv)
    out = ROOT / ".compiled"
    if not args.force and compiled_core(ROOT, {})[0] is not None:
        print("compile_core: the compiled core matches the sources")
        return 0
    if (why := unable()) is not None:
        print(f"compile_core: not compiling the core: {why}; tact runs pure Python")
        return 0
    started = time.monotonic()
    digest = sources_digest(ROOT)
    staging, old = out.with_name(".compiled.new"), out.with_name(".compiled.old")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        build(staging)
    except (Exception, SystemExit) as e:  # mypy's errors end in SystemExit, the C build's too
        shutil.rmtree(staging, ignore_errors=True)
        why = f"the errors above, status {e.code}" if isinstance(e, SystemExit) else repr(e)
        print(f"compile_core: could not compile the core ({why}); tact runs pure Python")
        return 0
    if sources_digest(ROOT) != digest:
        shutil.rmtree(staging, ignore_errors=True)
        print("compile_core: the sources changed during the build; run it again")
        return 0
    manifest = {
        "sources": digest,
        "python": sys.implementation.cache_tag,
        "suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "files": {
            p.relative_to(staging).as_posix(): p.stat().st_size
            for p in sorted(staging.rglob("*"))
            if p.is_file()
        },
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    # In place by renames: a process starting meanwhile finds the old core, none, or the new
    # one whole, never a half-copied one.
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    took = time.monotonic() - started
    print(f"compile_core: compiled {len(CORE)} modules into {out} in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
