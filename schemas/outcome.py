"""The Outcome record: what followed one Action, once its attribution window closed
(topic `outcomes`, or the outcomes file of a replay). One per Action, keyed by `action_id`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import Channel, CustomerId, EventTime, Frame, Intensity, Play, Sku

Amount = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
FeedbackKind = Literal[
    "impression",
    "click",
    "dismiss",
    "accept",
    "delivered",
    "open",
    "bounce",
    "unsubscribe",
    "complaint",
]
OutcomeStatus = Literal["closed", "cancelled", "censored", "evicted"]
Attribution = Literal["last_touch", "other_touch", "none"]


class Outcome(BaseModel):
    """What an Action led to. Money is in the catalog's currency.

    `profit = margin - return_loss - channel_cost - unsubscribe_cost` is what the Action is
    credited with: the margin of the offered SKU when this Action was the last touch before
    the order. `window_profit` counts every order the customer placed in the window instead
    (what a policy earned, whatever was attributed). Attributed profit is not incremental
    profit: holdout Actions record what customers did without being contacted, and
    `tact report` compares the two.

    status: `closed` (the window ran its course), `cancelled` (never delivered: a purchase
    or a later suppression cancelled it before `not_before`), `censored` (the stream ended
    while the window was open: the figures so far), `evicted` (closed early because the
    customer had too many open windows).
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    action_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    customer_id: CustomerId
    decided_at: EventTime
    window_start: EventTime = Field(description="when the Action could first be delivered")
    window_end: EventTime = Field(description="end of the purchase window (returns may follow)")
    closed_at: EventTime = Field(description="event time the record was closed")
    status: OutcomeStatus
    play: Play
    channel: Channel
    offer_sku: Sku | None
    frame: Frame | None
    intensity: Intensity
    holdout: bool
    propensity: float = Field(gt=0, le=1)
    segment: Annotated[str, Field(max_length=64)]
    delivered: bool = Field(description="sent to a connector: not holdout, protect or cancelled")
    feedback: dict[FeedbackKind, Count] = Field(
        description="offer and message feedback that named this Action (or its channel)"
    )
    converted: bool = Field(description="the offered SKU was ordered within the window")
    attribution: Attribution
    quantity: Count
    revenue: Amount
    margin: Amount
    returned_quantity: Count
    return_loss: Amount = Field(description="margin given back and handling of returns of it")
    channel_cost: Amount
    unsubscribe_cost: Amount
    profit: Amount
    window_margin: Amount = Field(description="margin of every order in the window")
    window_profit: Amount
    policy_version: Annotated[str, Field(min_length=1, max_length=64)]
    model_version: Annotated[str, Field(min_length=1, max_length=64)]
    predicted_accept: Probability | None = Field(
        default=None,
        description="the engine's P(accept) at decision time: of buying the offered SKU in the"
        " window if delivered (assist: of engaging); null for protect",
    )
    predicted_organic: Probability | None = Field(
        default=None,
        description="the engine's P(buying the offered SKU without the offer) at decision time;"
        " predicted_accept - predicted_organic is the uplift it expected",
    )
    predicted_return: Probability | None = Field(
        default=None, description="the engine's P(return) of the offered SKU if bought"
    )
    returns_matched_by: Literal["order", "sku"] | None = Field(
        default=None,
        description="how returns and refunds were joined to a converted window: by the id of"
        " the order that converted it, or (windows converted before order ids were kept) by"
        " the SKU alone; null when it did not convert",
    )
