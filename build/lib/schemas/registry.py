"""Which event types exist and which topic family carries each."""

from __future__ import annotations

from typing import Literal

from schemas.clickstream import CLICKSTREAM_EVENTS
from schemas.envelope import Envelope
from schemas.orders import ORDER_EVENTS

TopicFamily = Literal["clickstream", "orders"]


def _type_name(model: type[Envelope]) -> str:
    annotation = model.model_fields["type"].annotation
    (name,) = annotation.__args__  # type: ignore[union-attr]
    return str(name)


EVENT_MODELS: dict[str, type[Envelope]] = {
    _type_name(model): model for model in (*CLICKSTREAM_EVENTS, *ORDER_EVENTS)
}
FAMILY_OF_TYPE: dict[str, TopicFamily] = {
    **{_type_name(model): "clickstream" for model in CLICKSTREAM_EVENTS},
    **{_type_name(model): "orders" for model in ORDER_EVENTS},
}
