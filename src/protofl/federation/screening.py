"""The server's check of what clients send, before anything is aggregated.

A client whose weights do not match the global model or contain NaN/inf is left out of the
round; a client whose prototypes are malformed (wrong shape or dtype, NaN, unknown class)
keeps its weights in the average but its prototypes are dropped. Both are logged and
reported in the round's record; the round goes on without them. With ``distance_screen`` set,
an update far from the global model (beyond a multiple of the round's median distance) is
left out too (:func:`distance_screen`). Used by the simulator and the Flower strategy alike.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Sequence

import torch

from protofl.core.payloads import ClientUpdate, StateDict
from protofl.errors import PayloadError, TrainingError
from protofl.federation.defences import update_norms

logger = logging.getLogger(__name__)


def weight_problem(weights: StateDict, reference: StateDict) -> str | None:
    """Why ``weights`` cannot be averaged with the global model's, or None if they can."""
    if weights.keys() != reference.keys():
        missing = sorted(reference.keys() - weights.keys())[:3]
        extra = sorted(weights.keys() - reference.keys())[:3]
        return f"weights do not match the model (missing {missing}, unexpected {extra})"
    for key, value in weights.items():
        expected = reference[key]
        if value.shape != expected.shape or value.dtype != expected.dtype:
            return (
                f"weights[{key!r}] is {value.dtype} {tuple(value.shape)}, expected "
                f"{expected.dtype} {tuple(expected.shape)}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"weights[{key!r}] contains NaN or inf"
    return None


def screen_update(
    update: ClientUpdate, reference: StateDict, num_classes: int, feature_dim: int
) -> tuple[ClientUpdate | None, str | None]:
    """(the update fit to aggregate or None, why something was rejected or None)."""
    problem = weight_problem(update.weights, reference)
    if problem is not None:
        return None, f"update rejected: {problem}"
    if update.prototypes is not None:
        try:
            update.prototypes.validate(num_classes, feature_dim, "prototypes")
        except PayloadError as err:
            return dataclasses.replace(update, prototypes=None), f"prototypes rejected: {err}"
    return update, None


def report(rejected: dict[str, str], kept: int, round_index: int) -> None:
    """Log every rejection; stop the run when no update is left to aggregate."""
    for client_id, reason in rejected.items():
        logger.warning("round %d, client %s: %s", round_index, client_id, reason)
    if not kept:
        raise TrainingError(
            f"round {round_index}: every client's update was rejected: "
            + "; ".join(f"{c}: {r}" for c, r in rejected.items())
        )


def screen_updates(
    updates: Sequence[ClientUpdate],
    reference: StateDict,
    num_classes: int,
    feature_dim: int,
    round_index: int,
) -> tuple[list[ClientUpdate], dict[str, str]]:
    """The updates fit to aggregate, and {client id: reason} for what was rejected."""
    kept, rejected = [], {}
    for update in updates:
        screened, reason = screen_update(update, reference, num_classes, feature_dim)
        if reason is not None:
            rejected[update.client_id] = reason
        if screened is not None:
            kept.append(screened)
    report(rejected, len(kept), round_index)
    return kept, rejected


def distance_screen(
    updates: Sequence[ClientUpdate], reference: StateDict, factor: float
) -> tuple[list[ClientUpdate], dict[str, str]]:
    """Drop each update whose distance from the round's global weights exceeds ``factor`` x
    the median of the round's distances; the rest keep their order. A screen any algorithm
    can sit behind, FedHEAL included, whose own weight rule favours far updates. An update at
    the median always stays (``factor`` >= 1), so the round never empties. Returns the kept
    updates and {client id: why} for the dropped ones."""
    if not updates:
        return [], {}
    floating = [key for key, value in reference.items() if value.is_floating_point()]
    distances = update_norms([u.weights for u in updates], reference, floating).tolist()
    bound = factor * statistics.median(distances)
    kept, dropped = [], {}
    for update, distance in zip(updates, distances, strict=True):
        if distance > bound:
            dropped[update.client_id] = (
                f"update rejected: its distance from the global model, {distance:.4g}, is over "
                f"distance_screen {factor:g} x the round's median {bound / factor:.4g}"
            )
        else:
            kept.append(update)
    return kept, dropped
