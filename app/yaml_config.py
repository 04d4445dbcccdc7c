"""YAML configuration files (policies, simulated worlds) read into pydantic models, with every
mistake reported as a ConfigurationError that names the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

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
        raise ConfigurationError(f"{where}: not valid YAML: {exc}") from None
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{where}: a {kind} is a YAML mapping")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{where}: {describe_validation_error(exc)}") from None
