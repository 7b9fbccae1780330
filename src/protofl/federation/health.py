"""Signs that a run has collapsed without producing a NaN, checked after every round: the
clients can no longer fit their own training data (train accuracy at chance), or the loss
has grown far beyond where it started. One warning per run says what to change."""

from __future__ import annotations

import math
from collections.abc import Sequence

from protofl.core.records import RoundRecord

CHANCE_MARGIN = 1.5  # train accuracy below 1.5x chance after local training: not learning
LOSS_GROWTH = 10.0  # mean train loss 10x its first round's: exploding
NO_PROGRESS = 0.02  # train accuracy within 2 points of round 1's: no progress


def collapse_warning(
    history: Sequence[RoundRecord],
    num_classes: int,
    algorithm: str,
    temperature: float | None = None,
) -> str | None:
    """A message when the latest round looks collapsed (from round 2 on), else None.
    ``temperature`` is the run's contrastive temperature, where the algorithm has one."""
    if len(history) < 2:
        return None
    latest, first = history[-1], history[0]
    train_accuracy, first_accuracy = latest.train.get("accuracy"), first.train.get("accuracy")
    loss, first_loss = latest.train.get("loss"), first.train.get("loss")
    chance = 1.0 / num_classes
    # near chance and no better than round 1: not merely a hard task that learns slowly
    at_chance = (
        train_accuracy is not None
        and train_accuracy < CHANCE_MARGIN * chance
        and train_accuracy <= (first_accuracy or 0.0) + NO_PROGRESS
    )
    exploding = (
        loss is not None
        and first_loss is not None
        and math.isfinite(loss)
        and loss > LOSS_GROWTH * max(first_loss, 1e-6)
    )
    if not (at_chance or exploding):
        return None
    what = (
        f"the clients' own training accuracy is {100 * (train_accuracy or 0):.1f}% (chance is "
        f"{100 * chance:.1f}%)"
        if at_chance
        else f"the mean training loss grew from {first_loss:.3g} to {loss:.3g}"
    )
    advice = _advice(algorithm, temperature)
    return f"round {latest.round}: {what}, so training looks collapsed. {advice}"


def _advice(algorithm: str, temperature: float | None) -> str:
    """Both syntaxes: the same run may come from the command line or from Python."""
    if algorithm.startswith("fpl") and temperature is not None:
        higher = max(0.2, 10 * temperature)
        return (
            f"FPL's contrastive term divides cosine similarities by {algorithm}.temperature "
            f"({temperature:g}): with small or low-dimensional features that is too sharp. Try "
            f"a higher one (--set {algorithm}.temperature={higher:g} on the command line, "
            f"algorithm_options={{{algorithm!r}: {{'temperature': {higher:g}}}}} in RunConfig), "
            "or a smaller lr."
        )
    return (
        "Try a smaller lr (--set lr=... on the command line, RunConfig(lr=...) in Python), "
        "or check the labels and the model's head."
    )
