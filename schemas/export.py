"""JSON Schema documents for every event type, the Action and the Outcome (schemas/json/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.action import Action
from schemas.outcome import Outcome
from schemas.registry import EVENT_MODELS, FAMILY_OF_TYPE

JSON_DIR = Path(__file__).parent / "json"
_BASE_ID = "https://tact.dev/schemas/"


def documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for each event type and for the Action."""
    docs: dict[str, dict[str, Any]] = {}
    for name, model in EVENT_MODELS.items():
        doc = model.model_json_schema(mode="validation")
        doc["$id"] = f"{_BASE_ID}{name}.json"
        doc["description"] = f"{(model.__doc__ or '').strip()} Topic: {FAMILY_OF_TYPE[name]}."
        docs[f"{name}.json"] = _with_draft(doc)
    action = Action.model_json_schema(mode="serialization")
    action["$id"] = f"{_BASE_ID}action.json"
    docs["action.json"] = _with_draft(action)
    outcome = Outcome.model_json_schema(mode="serialization")
    outcome["$id"] = f"{_BASE_ID}outcome.json"
    docs["outcome.json"] = _with_draft(outcome)
    return docs


def _with_draft(doc: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}


def stale_files(directory: Path, rendered: dict[str, bytes]) -> list[str]:
    """Names whose file content differs from `rendered`, plus stray .json files."""
    stale = [
        name
        for name, data in rendered.items()
        if not (directory / name).is_file() or (directory / name).read_bytes() != data
    ]
    stale += [p.name for p in directory.glob("*.json") if p.name not in rendered]
    return sorted(stale)
