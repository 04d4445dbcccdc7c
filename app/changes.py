"""Changes of what is learned, as operations (app/models.py `Models.change`): a name and JSON
arguments, applied at once or recorded for the one process that learns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def at_once(target: object) -> Callable[..., None]:
    """Changes of `target` made at once: `change(name, *args)` calls its method `name` (for
    parts used without models: tests)."""

    def change(name: str, *args: Any) -> None:
        getattr(target, name)(*args)

    return change
