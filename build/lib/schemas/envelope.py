"""The envelope every event carries, and the base model for event types."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.types import CustomerId, EventTime, Identifier, ShortText


class Envelope(BaseModel):
    """Fields common to every event on `clickstream` and `orders`.

    Unknown fields are ignored (producers may add fields before tact knows them); known fields
    are validated strictly: a number sent as a string is an error, not a guess.
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: Identifier
    type: str
    customer_id: CustomerId
    ts: EventTime
    session_id: Identifier | None = None
    source: ShortText | None = None
