"""YAML configuration files (policies, simulated worlds) read into pydantic models, with every
mistake reported as a ConfigurationError that names the file and the field."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from app.decode import describe_validation_error
from app.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)


def read_file(path: str | Path, kind: str) -> tuple[str, str]:
    """The text of a `kind` file and the name to report it by."""
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"{kind} file not found: {file}")
    return file.read_text("utf-8"), str(file)


def parse(text: str, where: str, kind: str, model: type[M], empty_ok: bool = False) -> M:
    """Validate YAML text as `model`; `where` names the source in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        message = str(exc).replace('in "<unicode string>", ', "")  # `where` names the file
        raise ConfigurationError(f"{where}: not valid YAML: {message}") from None
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{where}: a {kind} is a YAML mapping")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        hints = [
            _did_you_mean(model, e["loc"]) for e in exc.errors() if e["type"] == "extra_forbidden"
        ]
        hint = "".join(f" ({h})" for h in hints if h)
        raise ConfigurationError(f"{where}: {describe_validation_error(exc)}{hint}") from None


def _did_you_mean(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """For a key the model does not know: the nearest key it knows there, if one is close."""
    found: Any = model
    for part in loc[:-1]:  # down to the model that holds the unknown key
        found = _unwrap(found)
        if typing.get_origin(found) in (list, tuple, dict):
            found = typing.get_args(found)[-1]  # `part` is an index or a key
        elif _is_model(found) and str(part) in found.model_fields:
            found = found.model_fields[str(part)].annotation
        else:
            return ""
    found = _unwrap(found)
    if not loc or not _is_model(found):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(found.model_fields), n=1, cutoff=0.75)
    return f"did you mean {close[0]!r} for {'.'.join(map(str, loc))}?" if close else ""


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap(annotation: Any) -> Any:
    """`X` of `Annotated[X, ...]` and of `X | None`."""
    while True:
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation
