"""tact's decision core. Modules directly under `app/` are pure (no faust, kafka or redis
imports); the edges live in `app/io/` and `app/cli/`.

Importing `river.linear_model` (app/models.py) runs `river.proba`, for a Bayesian regression
tact does not use, and that imports `scipy.stats`: 0.3 s of every command's start. It is
loaded on its first use instead (importlib's LazyLoader), before anything imports River."""

from __future__ import annotations

import importlib.util
import sys


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


_defer("river.proba")
