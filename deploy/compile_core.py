"""Compile tact's decision core with mypyc into .compiled/ (`make install` runs this).

The compiled modules are the same source, typed as `mypy --strict` checks it, turned into C:
decisions come out byte for byte as the pure-Python ones do (a test replays a stream both
ways and compares). `app/__init__.py` puts .compiled/ in front of the package's own modules
only while its manifest matches the sources: after an edit, tact runs pure Python (and says
so) until the next `make install`. TACT_PURE_PYTHON=1 runs pure Python regardless.

Usage: python deploy/compile_core.py [--out DIR]. Needs mypy (a dev dependency) and a C
compiler; without either it says why and leaves tact on pure Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
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
]

# mypy as `make typecheck` runs it, except that typed third-party packages are not followed:
# mypyc keeps every function body it analyses, and River's and NumPy's bodies took mypy from
# 15 s to 6.5 minutes. Their values are plain Python objects to the compiled code anyway.
MYPY_CONFIG = """\
[mypy]
strict = True
plugins = pydantic.mypy

[mypy-faust.*,mode.*,kafka.*,aiokafka.*,river.*,crc32c.*,scipy.*,numpy.*,redis.*]
follow_imports = skip
ignore_missing_imports = True
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".compiled")
    parser.add_argument("--force", action="store_true", help="compile even when up to date")
    args = parser.parse_args(argv)
    default = args.out.resolve() == ROOT / ".compiled"
    if not args.force and default and compiled_core(ROOT, {})[0] is not None:
        print("compile_core: the compiled core matches the sources")
        return 0
    try:
        from mypyc.build import mypycify
        from setuptools import setup
    except ImportError as e:
        print(f"compile_core: not compiling the core ({e}); tact runs pure Python")
        return 0
    if shutil.which(os.environ.get("CC", "cc")) is None:
        print("compile_core: no C compiler (cc) found; tact runs pure Python")
        return 0
    out: Path = args.out.resolve()
    started = time.monotonic()
    digest = sources_digest(ROOT)
    with tempfile.TemporaryDirectory(prefix="tact-compile-") as tmp:
        config = Path(tmp, "mypy.ini")
        config.write_text(MYPY_CONFIG)
        # setuptools reads the project's pyproject.toml from the working directory, and older
        # ones refuse its license field: build from an empty one.
        os.chdir(tmp)
        paths = [str(ROOT / "app" / f"{m}.py") for m in CORE]
        extensions = mypycify(
            ["--config-file", str(config), *paths],
            opt_level="3",
            multi_file=True,  # C files the build compiles in parallel
            group_name=COMPILED_GROUP,
        )
        staging = Path(tmp, "lib")
        jobs = str(os.cpu_count() or 1)
        setup(
            name=COMPILED_GROUP,
            ext_modules=extensions,
            script_args=["-q", "build_ext", "--build-lib", str(staging), "-j", jobs],
        )
        manifest = {
            "sources": digest,
            "python": sys.implementation.cache_tag,
            "modules": [f"app.{m}" for m in CORE],
        }
        Path(staging, MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(staging, out)
    took = time.monotonic() - started
    print(f"compile_core: compiled {len(CORE)} modules into {out} in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
