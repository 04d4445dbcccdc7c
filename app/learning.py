"""Learning from outcomes: what each kind of window teaches the models (app/models.py).

    delivered expand / commit offer   P(accept): ordered within the window or not; and the
                                      exploration cell of its (segment, play, frame). One
                                      order teaches one success: when it converts several
                                      windows of the item, the credited one learns it (the
                                      latest taken up, else the latest delivered), the
                                      others that they did not bring it
    delivered assist                  P(accept): engaged (click, accept) once shown, or not;
                                      never learned when nothing says it was shown
    accepted offer                    P(return): returned within the return window or kept
    holdout offer (not delivered)     P(organic): bought anyway, or not (the latest held-out
                                      window of the item, likewise); the baseline that makes
                                      arbitration count incremental profit only

Windows are the lists app/attribution.py keeps; the features are those the offer was scored
on at decision time.
"""

from __future__ import annotations

from typing import Any, Final

from mypy_extensions import mypyc_attr

from app.context import CENTRE, RELATION_PLAY
from app.distraction import ASSIST, ASSIST_HELD, HELD
from app.models import PRIOR, PRIOR_SCALE, Models
from app.policy import Policy

# The learning features of a window: what the offer was scored on at decision time.
L_PRIOR: Final = 0
L_CONF: Final = 1
L_URG: Final = 2
L_PRICE: Final = 3
L_MAT: Final = 4
L_RISK: Final = 5
L_POST: Final = 6
L_LTV: Final = 7
L_KIND: Final = 8
L_RETURN: Final = 9
L_ORGANIC: Final = 10
L_STEP: Final = 11  # the offer's price step (app/context.py price_step); absent in older windows
L_SEEN: Final = 12  # 1 when the customer had looked at the offered item; absent in older windows
L_BASE: Final = 13  # 1 when the item it goes with was in the cart or bought lately; likewise
L_PASSED: Final = 14  # earlier offers of the item not bought since (accept only); likewise
L_LEVEL: Final = 15  # the offer's price level (app/catalog.py); likewise
_SIGNAL_KEYS: Final = ("r:conf", "r:urg", "r:price", "r:mat", "r:risk", "r:post", "r:ltv")
UPSELL_PLAYS: Final = frozenset({"expand", "commit"})


def accept_x(
    learn: list[Any], channel: str, relation: str, frame: str, intensity: str
) -> dict[str, float]:
    x = {
        PRIOR: learn[L_PRIOR] / PRIOR_SCALE,
        f"ch:{channel}": 1.0,
        f"play:{RELATION_PLAY[relation]}": 1.0,
        f"rel:{relation}": 1.0,
        f"fr:{frame}": 1.0,
        f"int:{intensity}": 1.0,
    }
    x.update(
        (key, value - CENTRE)
        for key, value in zip(_SIGNAL_KEYS, learn[L_CONF : L_LTV + 1], strict=True)
    )
    if len(learn) > L_PASSED and learn[L_PASSED]:
        x["x:passed"] = float(learn[L_PASSED])
    return _offer_x(x, learn)


def _offer_x(x: dict[str, float], learn: list[Any]) -> dict[str, float]:
    """`x` with the offer's own features: its price step and level, looked at, has the base
    (each absent in windows older than it)."""
    if len(learn) > L_STEP and learn[L_STEP]:
        x["x:price"] = learn[L_STEP]
    if len(learn) > L_LEVEL and learn[L_LEVEL]:
        x["x:level"] = learn[L_LEVEL]
    if len(learn) > L_SEEN and learn[L_SEEN]:
        x["x:seen"] = 1.0
    if len(learn) > L_BASE and learn[L_BASE]:
        x["x:base"] = 1.0
    return x


def return_x(learn: list[Any]) -> dict[str, float]:
    return {
        PRIOR: learn[L_RETURN] / PRIOR_SCALE,
        f"kind:{learn[L_KIND]}": 1.0,
        "r:risk": learn[L_RISK],
    }


def organic_x(learn: list[Any], relation: str) -> dict[str, float]:
    """What P(organic) learns from: the offer's relation and kind, and the customer and offer
    features P(accept) shares (readiness, value, the price step and level, looked at, has the
    base), so that the two differ by what the offer does and not by what each model can see."""
    x = {
        PRIOR: learn[L_ORGANIC] / PRIOR_SCALE,
        f"rel:{relation}": 1.0,
        f"kind:{learn[L_KIND]}": 1.0,
        "r:ltv": learn[L_LTV] - CENTRE,
    }
    x.update(
        (key, value - CENTRE)
        for key, value in zip(_SIGNAL_KEYS[:5], learn[L_CONF : L_RISK + 1], strict=True)
    )
    return _offer_x(x, learn)


@mypyc_attr(allow_interpreted_subclasses=True)  # subclassed outside the compiled core
class Learner:
    """Turns closed windows into training examples (nothing when learning is off)."""

    def __init__(self, policy: Policy, models: Models) -> None:
        self.enabled = policy.learning.enabled
        self.models = models

    def purchase(
        self,
        learn: list[Any],
        play: str,
        channel: str,
        relation: str,
        frame: str,
        intensity: str,
        delivered: bool,
        segment: str,
        bought: bool,
    ) -> None:
        """An offer's purchase window has an answer: bought within it, or closed without."""
        if not self.enabled or play not in UPSELL_PLAYS:
            return
        change = self.models.change
        if delivered:
            change("accept", accept_x(learn, channel, relation, frame, intensity), bought)
            change("cell", segment, play, frame, bought)
        else:
            change("organic", organic_x(learn, relation), bought)

    def engagement(
        self,
        learn: list[Any],
        channel: str,
        frame: str,
        intensity: str,
        segment: str,
        engaged: bool,
    ) -> None:
        """A delivered assist that was shown: did the customer engage with it?"""
        if not self.enabled:
            return
        change = self.models.change
        change("accept", accept_x(learn, channel, "self", frame, intensity), engaged)
        change("cell", segment, "assist", frame, engaged)

    def completion(
        self, moment: str, play: str, intensity: str, delivered: bool, completed: bool
    ) -> None:
        """An onsite action's moment had a purchase under way: did it complete in time?"""
        if not self.enabled:
            return
        if play == "assist":
            arm = ASSIST if delivered else ASSIST_HELD
        else:
            arm = intensity if delivered else HELD
        self.models.change("completion", moment, arm, completed)

    def kept(self, learn: list[Any], returned: bool) -> None:
        """An accepted offer's return window closed: returned in it, or kept."""
        if self.enabled:
            self.models.change("returns", return_x(learn), returned)
