"""The unsubscribe guardrail: the learned unsubscribe rate, the price that rises while
unsubscribes run ahead of the budget's pace, and what the engine does with it."""

from __future__ import annotations

import math

import pytest

from app.guardrail import UnsubscribeBudget, UnsubscribeCounts
from app.models import Models
from app.policy import Policy, load_policy

DAY = 86400.0


def policy(per_1000: float | None) -> Policy:
    p = load_policy(None)
    return p.model_copy(
        update={"guardrails": p.guardrails.model_copy(update={"unsubscribes_per_1000": per_1000})}
    )


def budget(per_1000: float | None = 1.0, customers: int = 2000) -> UnsubscribeBudget:
    b = UnsubscribeBudget(policy(per_1000), UnsubscribeCounts())
    for _ in range(customers):
        b.arrived(0.0)
    return b


def test_the_rate_starts_at_the_policy_and_follows_what_is_counted() -> None:
    b = budget()
    prior = load_policy(None).channels["email"].unsubscribe_risk
    assert b.rate("email") == pytest.approx(prior)
    for _ in range(2000):
        b.message("email")
    for i in range(20):
        b.unsubscribe("email", float(i))
    assert b.rate("email") == pytest.approx((prior * 500 + 20) / 2500)
    assert b.rate("onsite_pdp") == 0.0 and "onsite_pdp" not in b.costs


def test_unsubscribes_on_pace_cost_the_plain_rate() -> None:
    b = budget()
    b.tick(30 * DAY)  # 2,000 customers for 30 days at 1 per 1,000: 2 allowed
    b.unsubscribe("email", 30 * DAY)
    assert b.price == 1.0
    value = load_policy(None).channels["email"].subscriber_value
    assert b.costs["email"] == pytest.approx(b.rate("email") * value)


def test_unsubscribes_ahead_of_pace_raise_the_price_until_the_budget_catches_up() -> None:
    b = budget()
    for _ in range(6):
        b.unsubscribe("email", 10 * DAY)  # 6 counted, about 0.67 allowed by day 10
    ahead = b.price
    assert ahead > 100.0
    assert b.costs["email"] == pytest.approx(b.rate("email") * 4.0 * ahead)
    b.tick(60 * DAY)  # 4 allowed: still ahead, cheaper
    assert 1.0 < b.price < ahead
    b.tick(120 * DAY)  # 8 allowed: back on pace
    assert b.price == 1.0


def test_no_budget_no_price() -> None:
    b = budget(None)
    for _ in range(50):
        b.unsubscribe("sms", DAY)
    assert b.price == 1.0 and math.isinf(b.allowed(DAY))


def test_the_counts_are_checkpointed_with_the_models() -> None:
    models = Models("m")
    b = UnsubscribeBudget(policy(1.0), models.unsubscribes)
    b.arrived(5.0)
    b.message("sms")
    b.unsubscribe("sms", 6.0)
    again = Models.from_bytes(models.to_bytes())
    assert again.unsubscribes.state() == models.unsubscribes.state()
    assert UnsubscribeBudget(policy(1.0), again.unsubscribes).rate("sms") == b.rate("sms")


def test_a_restored_budget_prices_as_one_that_never_stopped() -> None:
    """The last price and when it was set are checkpointed: a restarted worker does not
    reprice early (which would change what it re-decides)."""
    models = Models("m")
    b = UnsubscribeBudget(policy(1.0), models.unsubscribes)
    for _ in range(100):
        b.arrived(0.0)
    b.tick(DAY)
    b.unsubscribe("email", DAY + 60.0)
    again = UnsubscribeBudget(policy(1.0), Models.from_bytes(models.to_bytes()).unsubscribes)
    for later in (DAY + 120.0, DAY + 3000.0, DAY + 4000.0):
        b.tick(later)
        again.tick(later)
        assert again.price == b.price and again.costs == b.costs


def test_with_learning_off_nothing_is_counted_and_the_price_stays() -> None:
    p = policy(1.0)
    p = p.model_copy(update={"learning": p.learning.model_copy(update={"enabled": False})})
    counts = UnsubscribeCounts()
    b = UnsubscribeBudget(p, counts)
    b.arrived(0.0)
    for _ in range(100):
        b.message("email")
    for _ in range(10):
        b.unsubscribe("email", DAY)
    b.tick(2 * DAY)
    assert counts.state()["sent"] == {} and b.price == 1.0
    assert b.rate("email") == p.channels["email"].unsubscribe_risk


def test_a_checkpoint_priced_with_learning_on_is_plain_with_learning_off() -> None:
    on = policy(1.0)
    models = Models("m")
    b = UnsubscribeBudget(on, models.unsubscribes)
    b.arrived(0.0)
    for _ in range(6):
        b.unsubscribe("email", DAY)
    assert b.price > 100
    off = on.model_copy(update={"learning": on.learning.model_copy(update={"enabled": False})})
    again = UnsubscribeBudget(off, Models.from_bytes(models.to_bytes()).unsubscribes)
    assert again.price == 1.0
    assert again.costs["email"] == pytest.approx(
        off.channels["email"].unsubscribe_risk * off.channels["email"].subscriber_value
    )
