"""Field types shared by every event and by the Action record."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

# (the functions live in the core, compiled with it; named here as the contract's)
from app.timestamps import MAX_EPOCH_MS, MIN_EPOCH_MS
from app.timestamps import event_seconds as event_seconds
from app.timestamps import format_event_time as format_event_time
from app.timestamps import parse_event_time as parse_event_time
from app.timestamps import zone_offset_minutes as zone_offset_minutes

EventTime = Annotated[
    datetime,
    BeforeValidator(parse_event_time),
    PlainSerializer(format_event_time, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "description": "ISO-8601 in UTC"},
        mode="serialization",
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time", "description": "ISO-8601 with a zone"},
                {
                    "type": "integer",
                    "minimum": MIN_EPOCH_MS,
                    "maximum": MAX_EPOCH_MS,
                    "description": "epoch milliseconds",
                },
            ]
        },
        mode="validation",
    ),
]

Play = Literal["assist", "expand", "commit", "protect"]
# Where an action can reach a customer; "none" is the channel of a protect action.
OutboundChannel = Literal[
    "onsite_pdp",
    "onsite_cart",
    "post_purchase",
    "email",
    "sms",
    "paid_retargeting",
    "account_portal",
]
Channel = Literal[OutboundChannel, "none"]
# Channels that reach a customer off the site, where marketing needs their consent.
MessagingChannel = Literal["email", "sms", "paid_retargeting"]
Frame = Literal[
    "convenience",
    "risk_reduction",
    "completeness",
    "outcome_acceleration",
    "cost_efficiency",
    "premium_status",
]
Intensity = Literal["low", "medium", "high"]

Identifier = Annotated[str, Field(min_length=1, max_length=256)]
CustomerId = Annotated[str, Field(min_length=1, max_length=256)]
Sku = Annotated[str, Field(min_length=1, max_length=128)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Quantity = Annotated[int, Field(ge=1, le=100_000)]
ShortText = Annotated[str, Field(max_length=1024)]
