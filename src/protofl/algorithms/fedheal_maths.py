"""FedHEAL's server maths as pure functions: sign-consistency masks and fair client weights.

Chen, Huang, Ye, "Fair Federated Learning under Domain Skew with Local Consistency and Domain
Diversity", CVPR 2024 (arXiv 2405.16585); reference code ``yuhangchen0/FedHEAL``,
``models/utils/federated_model.py``. FedHEAL ("parameter-harmonised and aggregation-equalised
learning") has two server-side parts, both composable with any client method:

* Parameter harmonisation. Every client keeps, per coordinate, the fraction of its past
  rounds in which that coordinate's update was non-negative. A coordinate of this round's
  update is kept only if more than ``threshold`` (0.3) of those rounds agree with its sign
  now; the first round keeps everything. The consistency is across a client's own rounds,
  not across clients.
* Aggregation equalisation. A client's distance is the sum over parameter tensors of the
  L2 norm of its masked update; its weight grows each round by an increment that is a moving
  average of its share of the total distance, and the weights are normalised to sum to 1.
  Sample counts play no part (the reference never uses them once these weights are on).

Sign convention: an *update* is ``global - local``, as in the reference. The sign history
counts ``update >= 0`` as positive, so a coordinate that did not move counts as positive.

Buffer policy: every state-dict entry is combined alike, as the reference does (BatchNorm
running statistics are masked and reweighted like parameters), except that integer entries
(``num_batches_tracked``) are computed in float64 and rounded to the nearest integer with their
dtype kept; the reference truncates them towards zero on ``load_state_dict``. Distances use
parameters only (the reference's ``named_parameters``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from protofl.core.payloads import StateDict
from protofl.errors import ConfigError, PayloadError
from protofl.federation.aggregation import is_parameter_entry

DEFAULT_THRESHOLD = 0.3  # reference main.py --threshold
DEFAULT_DISTANCE_MOMENTUM = 0.4  # reference main.py --beta


def consistency_mask(
    update: torch.Tensor,  # [...] this round's update, global - local
    positive_fraction: torch.Tensor,  # [...] fraction of past rounds with update >= 0
    rounds_seen: int,
    threshold: float = DEFAULT_THRESHOLD,
) -> torch.Tensor:  # [...] bool
    """Keep a coordinate when more than ``threshold`` of the client's past rounds moved it in
    the same direction as now. With no past round (``rounds_seen == 0``) keep everything."""
    if rounds_seen == 0:
        return torch.ones_like(update, dtype=torch.bool)
    agreeing = torch.where(update >= 0, positive_fraction, 1 - positive_fraction)
    return agreeing > threshold


def updated_positive_fraction(
    update: torch.Tensor,  # [...]
    positive_fraction: torch.Tensor,  # [...] over the ``rounds_seen`` past rounds
    rounds_seen: int,
) -> torch.Tensor:  # [...] float32, over rounds_seen + 1 rounds
    """Fold this round's signs into the running fraction of non-negative updates."""
    positive = (update >= 0).float()
    if rounds_seen == 0:
        return positive
    return (positive_fraction * rounds_seen + positive) / (rounds_seen + 1)


def client_consistency(
    global_weights: StateDict,
    local_weights: StateDict,
    history: StateDict,
    rounds_seen: int,
    threshold: float | None = DEFAULT_THRESHOLD,
) -> tuple[StateDict, StateDict, StateDict]:
    """One client's (masked update, bool mask, new sign history), entry by entry; with
    ``threshold=None`` nothing is masked (the history is still updated).

    ``rounds_seen`` counts the rounds this client took part in before; with 0, ``history`` is
    ignored (may be empty). The reference counts global rounds instead, which is the same under
    full participation and raises a KeyError for a client absent from round 0 otherwise.
    Masked updates of integer entries are float64, so no fraction is lost before rounding.
    """
    masked, masks, new_history = {}, {}, {}
    for key, global_value in global_weights.items():
        dtype = global_value.dtype if global_value.is_floating_point() else torch.float64
        update = global_value.to(dtype) - local_weights[key].to(dtype)
        if rounds_seen and key not in history:
            raise PayloadError(f"sign history has no entry {key!r} after {rounds_seen} rounds.")
        previous = history[key] if rounds_seen else update
        if threshold is None:
            masks[key] = torch.ones_like(update, dtype=torch.bool)
        else:
            masks[key] = consistency_mask(update, previous, rounds_seen, threshold)
        masked[key] = update * masks[key]
        new_history[key] = updated_positive_fraction(update, previous, rounds_seen)
    return masked, masks, new_history


def update_distance(
    masked_update: StateDict, parameter_names: frozenset[str] = frozenset()
) -> torch.Tensor:  # [] float64
    """Sum over parameter tensors of the L2 norm of each tensor's masked update (a sum of
    per-tensor norms, not the norm of the whole vector, as in the reference)."""
    total = torch.zeros((), dtype=torch.float64)
    for key, value in masked_update.items():
        if is_parameter_entry(key, value, parameter_names):
            total = total + torch.linalg.vector_norm(value.double())
    return total


def fedheal_client_weights(
    distances: torch.Tensor,  # [K] this round's clients
    previous_weights: torch.Tensor,  # [K] unnormalised weights returned last time
    previous_increments: torch.Tensor,  # [K]
    seen: torch.Tensor,  # [K] bool: has the client a previous weight
    distance_momentum: float = DEFAULT_DISTANCE_MOMENTUM,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # [K] normalised, [K] weights, [K] incr.
    """Fair aggregation weights: ``inc_k = (1 - m) inc_k' + m d_k / sum_j d_j``,
    ``w_k = w_k' + inc_k``, aggregation weight ``w_k / sum_j w_j``; ``m`` is
    ``distance_momentum`` (the reference's --beta), the weight of the *new* distance share.

    A client not ``seen`` before starts from weight 1/K and increment 0 (the reference's
    ``1 / online_num``). The stored weights are the unnormalised ``w_k``, so they keep growing;
    that is the reference's behaviour. If every distance is 0 the shares are 0 (the reference
    divides by zero).
    """
    if not 0.0 <= distance_momentum <= 1.0:
        raise ConfigError(f"distance_momentum must lie in [0, 1]; got {distance_momentum}.")
    count = distances.shape[0]
    distances = distances.double()
    previous_weights = torch.where(seen, previous_weights.double(), 1.0 / count)
    previous_increments = torch.where(seen, previous_increments.double(), 0.0)
    total = distances.sum()
    share = distances / total if total > 0 else torch.zeros_like(distances)
    increments = (1 - distance_momentum) * previous_increments + distance_momentum * share
    weights = previous_weights + increments
    return weights / weights.sum(), weights, increments


def masked_weighted_update(
    global_weights: StateDict,
    masked_updates: Sequence[StateDict],
    masks: Sequence[StateDict],
    aggregation_weights: torch.Tensor,  # [K]
) -> StateDict:
    """``global - sum_k a_k m_k u_k / sum_k a_k m_k`` per coordinate, with ``a`` the client
    weights, ``m`` the masks and ``u`` the masked updates; a coordinate that no client keeps
    stays as it was. Integer entries are rounded to the nearest integer, dtype kept."""
    counts = {len(masked_updates), len(masks), int(aggregation_weights.shape[0])}
    if not masked_updates or len(counts) != 1:
        raise PayloadError(
            f"need one update, mask and weight per client; got {len(masked_updates)}, "
            f"{len(masks)}, {aggregation_weights.shape[0]}."
        )
    combined = {}
    for key, global_value in global_weights.items():
        dtype = global_value.dtype if global_value.is_floating_point() else torch.float64
        updates = torch.stack([u[key].to(dtype) for u in masked_updates])  # [K, ...]
        kept = torch.stack([m[key] for m in masks]).to(dtype)  # [K, ...]
        shape = (-1,) + (1,) * global_value.dim()
        adjusted = aggregation_weights.to(kept.device, dtype).view(shape) * kept  # [K, ...]
        total = adjusted.sum(dim=0)  # [...]
        step = (adjusted * updates).sum(dim=0) / torch.where(total > 0, total, 1.0)
        new_value = global_value.to(dtype) - step
        if not global_value.is_floating_point():
            new_value = new_value.round().to(global_value.dtype)
        combined[key] = new_value
    return combined


@dataclass(frozen=True, eq=False)
class FedhealRound:
    """What :func:`fedheal_combine` returns; every [K] tensor follows the clients' order."""

    weights: StateDict  # the new global model
    histories: list[StateDict]  # each client's new sign history
    client_weights: torch.Tensor  # [K] unnormalised weights w_k, to pass back next round
    client_increments: torch.Tensor  # [K] increments inc_k, to pass back next round
    aggregation_weights: torch.Tensor  # [K] this round's normalised weights
    kept_share: torch.Tensor  # [K] share of each client's parameter coordinates its mask kept


def fedheal_combine(
    global_weights: StateDict,
    client_weights: Sequence[StateDict],
    histories: Sequence[StateDict],
    rounds_seen: Sequence[int],
    previous_weights: torch.Tensor,  # [K]
    previous_increments: torch.Tensor,  # [K]
    seen: torch.Tensor,  # [K] bool
    parameter_names: frozenset[str] = frozenset(),
    threshold: float | None = DEFAULT_THRESHOLD,
    distance_momentum: float = DEFAULT_DISTANCE_MOMENTUM,
    fixed_weights: torch.Tensor | None = None,  # [K]
) -> FedhealRound:
    """One FedHEAL server round: consistency masks, fair weights, masked weighted combination.

    All per-client arguments are aligned with ``client_weights``: the caller keeps each
    client's history, participation count, weight and increment under its id and passes this
    round's clients' entries in one order (``seen`` False for a newcomer).

    To take the method apart (our ablation switches, not the paper's): ``threshold=None``
    keeps every coordinate (the sign history is still kept);
    ``fixed_weights`` (e.g. sample counts) replace the fair weights, whose stored state is then
    passed back unchanged. With both, this is FedAvg's weighted mean.
    """
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise ConfigError(f"threshold must lie in [0, 1); got {threshold}.")
    masked, masks, new_histories = [], [], []
    for local, history, count in zip(client_weights, histories, rounds_seen, strict=True):
        update, mask, new_history = client_consistency(
            global_weights, local, history, count, threshold
        )
        masked.append(update)
        masks.append(mask)
        new_histories.append(new_history)
    previous_weights, previous_increments = previous_weights.cpu(), previous_increments.cpu()
    seen = seen.cpu()
    if fixed_weights is not None:
        fixed = fixed_weights.double().cpu()
        normalised = fixed / fixed.sum()
        weights, increments = previous_weights.double(), previous_increments.double()
    else:
        # [K] bookkeeping lives on the CPU (docs: where tensors live); weights stay put
        distances = torch.stack([update_distance(u, parameter_names).cpu() for u in masked])
        normalised, weights, increments = fedheal_client_weights(
            distances, previous_weights, previous_increments, seen, distance_momentum
        )
    new_global = masked_weighted_update(global_weights, masked, masks, normalised)
    kept = torch.tensor([kept_share(m, global_weights, parameter_names) for m in masks])
    return FedhealRound(new_global, new_histories, weights, increments, normalised, kept)


def kept_share(
    mask: StateDict, global_weights: StateDict, parameter_names: frozenset[str] = frozenset()
) -> float:
    """The share of a client's parameter coordinates (buffers left out) that its mask keeps."""
    kept = total = 0
    for key, value in mask.items():
        if is_parameter_entry(key, global_weights[key], parameter_names):
            kept += int(value.sum())
            total += value.numel()
    return kept / total if total else 1.0
