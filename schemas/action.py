"""The Action record: what tact decided for a customer at one moment (topic `actions`)."""

from __future__ import annotations

from typing import Annotated, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.types import (
    Channel,
    CustomerId,
    EventTime,
    Frame,
    Identifier,
    Intensity,
    OutboundChannel,
    Play,
    Sku,
)

ReasonCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.:-]+$")]
ExperimentName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.:-]+$")]
ExperimentArm = Literal["treated", "held_out", "allowed", "suppressed"]

PLAYS: tuple[Play, ...] = get_args(Play)
CHANNELS: tuple[Channel, ...] = (*get_args(OutboundChannel), "none")


class Suppression(BaseModel):
    """Do not use `channel` for this customer until `until`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    channel: OutboundChannel
    until: EventTime


class QuietHours(BaseModel):
    """The customer's local quiet hours: nothing outbound while the local hour is in
    [start, end) (wrapping past midnight when start > end), local time being UTC plus
    `utc_offset_minutes`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    start: int = Field(ge=0, le=23)
    end: int = Field(ge=0, le=23)
    utc_offset_minutes: int = Field(ge=-840, le=840)


class Action(BaseModel):
    """One decision. `action_id` is deterministic: the idempotency key for connectors.

    `play == "protect"` means no offer: channel is "none", and `suppress` says which channels
    to keep quiet and until when. `holdout` decisions are recorded but never delivered.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    action_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    customer_id: CustomerId
    ts: EventTime
    play: Play
    channel: Channel
    offer_sku: Sku | None
    frame: Frame | None
    intensity: Intensity
    not_before: EventTime
    expires_at: EventTime
    suppress: list[Suppression]
    holdout: bool
    expected_profit: float = Field(allow_inf_nan=False)
    propensity: float = Field(
        gt=0,
        le=1,
        description="probability with which this action was chosen among the allowed ones "
        "(exploration); 1.0 for decisions made deterministically",
    )
    experiments: dict[ExperimentName, ExperimentArm] = Field(
        default_factory=dict,
        description="the customer's deterministic assignment in every experiment of the "
        "policy, e.g. {'holdout': 'treated', 'play_holdout:commit': 'held_out'}",
    )
    reasons: list[ReasonCode]
    policy_version: Annotated[str, Field(min_length=1, max_length=64)]
    model_version: Annotated[str, Field(min_length=1, max_length=64)]
    source_event_id: Identifier = Field(
        description="event_id of the event that prompted this decision (for tracing)"
    )
    quiet_hours: QuietHours | None = Field(
        default=None,
        description="for an outbound channel and a customer of known zone: the local hours "
        "in which it must not be delivered (a connector that reaches it then waits until "
        "they end, or skips it if it expires first); null: none apply",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.expires_at < self.not_before:
            raise ValueError("expires_at is before not_before")
        if self.play == "protect":
            if self.channel != "none" or self.offer_sku is not None or self.frame is not None:
                raise ValueError("a protect action has channel 'none', no offer and no frame")
        elif self.channel == "none":
            raise ValueError(f"a {self.play} action needs a channel")
        return self
