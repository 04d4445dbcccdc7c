"""tact's decision core. Modules directly under `app/` are pure (no faust, kafka or redis
imports); the edges live in `app/io/` and `app/cli/`.

Importing `river.linear_model` (app/models.py) runs `river.proba`, for a Bayesian regression
tact does not use, and that imports `scipy.stats`: 0.3 s of every command's start. It is
loaded on its first use instead (importlib's LazyLoader), before anything imports River.

OpenBLAS (numpy's and scipy's, one each) starts a thread per core, and those spin after each
call into it: app/bandit.py's one call at import kept two threads busy for 0.1 s each, on the
core of a pinned replay or beside a worker's broker. tact's arrays are small: one thread each
(OPENBLAS_NUM_THREADS, unless set; OpenBLAS reads it before OMP_NUM_THREADS), before anything
imports numpy (a program that imported numpy before tact keeps its threads).

The hot modules may also be compiled with mypyc (`deploy/compile_core.py`, run by `make
install`) into .compiled/ beside this package. They are used only while the manifest there
matches these sources, byte for byte, and TACT_PURE_PYTHON is not set: an edited checkout runs
pure Python until it is compiled again, and says so once."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

COMPILED_GROUP = "tact_core"
MANIFEST = "manifest.json"


def sources_digest(root: Path) -> str:
    """One digest of every Python source of the packages the compiled core is built from, and
    of the script that builds it ("unreadable" when one cannot be read: never a match)."""
    h = hashlib.sha256()
    paths = [p for package in ("app", "schemas") for p in sorted((root / package).rglob("*.py"))]
    for path in [*paths, root / "deploy" / "compile_core.py"]:
        if not path.is_file():  # an editor's lock file (a dangling link), or no build script
            continue
        try:
            data = path.read_bytes()
        except OSError:
            return "unreadable"
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def compiled_core(root: Path, env: Mapping[str, str]) -> tuple[Path | None, str]:
    """The directory of the compiled core to use (None: pure Python), and why."""
    if env.get("TACT_PURE_PYTHON", "").strip().lower() in ("1", "true", "yes", "on"):
        return None, "TACT_PURE_PYTHON is set"
    built = root / ".compiled"
    try:
        manifest = json.loads((built / MANIFEST).read_text())
    except FileNotFoundError:
        return None, "not compiled (make install compiles it)"
    except (OSError, ValueError) as e:
        return None, f"{built / MANIFEST} is unreadable ({e})"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if not isinstance(manifest, dict) or manifest.get("suffix") != suffix:
        return None, f"compiled for another Python or machine than this one ({suffix})"
    if manifest.get("sources") != sources_digest(root):
        return None, "the sources changed since it was compiled (make install compiles them)"
    files = manifest.get("files")
    for name, size in files.items() if isinstance(files, dict) else [("its file list", -1)]:
        try:
            whole = (built / name).stat().st_size == size
        except OSError:
            whole = False
        if not whole:
            return None, f"incomplete ({name}; make install compiles it again)"
    return built, "compiled"


def _use_compiled_core() -> str:
    if __name__ != "app":  # this file imported again as the module app.__init__
        return "see the package app"
    root = Path(__file__).resolve().parent.parent
    built, why = compiled_core(root, os.environ)
    if built is None:
        if why.startswith(("the sources changed", "incomplete")):  # not what was meant
            logging.getLogger("tact").warning("running the pure-Python core: %s", why)
        return f"pure Python: {why}"
    package = sys.modules["app"]
    # The compiled modules share one library, imported by its top-level name.
    if str(built) not in sys.path:
        sys.path.append(str(built))
    package.__path__.insert(0, str(built / "app"))
    return "compiled (mypyc)"


CORE_BUILD = _use_compiled_core()


def _defer(name: str) -> None:
    """Import module `name` lazily: it runs when one of its attributes is first read."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)


os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
_defer("river.proba")
