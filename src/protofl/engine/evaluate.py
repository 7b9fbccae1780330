"""Evaluation of the global model: top-1 accuracy on every domain's full test split."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from protofl.core.payloads import ClientUpdate, GlobalState, StateDict
from protofl.core.records import RoundRecord
from protofl.core.stats import domain_std, pooled_accuracy, worst_domain
from protofl.engine.data import TestSet
from protofl.engine.precision import FP32, Precision
from protofl.federation.privacy import PrototypePrivacy, epsilons
from protofl.models.base import feature_model


def evaluate(
    model: nn.Module, test_sets: Sequence[TestSet], batch_size: int, precision: Precision = FP32
) -> dict[str, float]:
    """Top-1 accuracy (a fraction in [0, 1]) per domain, in inference mode."""
    counts = correct_counts(model, test_sets, batch_size, precision)
    return {domain: correct / total for domain, (correct, total) in counts.items()}


def correct_counts(
    model: nn.Module, test_sets: Sequence[TestSet], batch_size: int, precision: Precision = FP32
) -> dict[str, tuple[int, int]]:
    """Per domain, (correctly classified, samples), in inference mode. Counts, not
    accuracies, so that parts scored apart (a Flower node's share of a domain's validation
    set) add up to the score of the whole."""
    was_training = model.training
    model.eval()
    counts = {}
    with torch.inference_mode(), precision.autocast():
        for test_set in test_sets:
            correct = torch.zeros((), dtype=torch.int64, device=test_set.data.labels.device)
            for start in range(0, len(test_set.data), batch_size):
                batch = test_set.data.inputs[start : start + batch_size]
                inputs = precision.prepare_input(test_set.transform.eval(batch))
                labels = test_set.data.labels[start : start + batch_size]
                typed = feature_model(model)
                logits = typed.head(typed.features(inputs))
                correct += (logits.argmax(dim=1) == labels).sum()
            counts[test_set.domain] = (int(correct), len(test_set.data))
    model.train(was_training)
    return counts


def evaluate_personal(
    model: nn.Module,
    clients: Sequence[tuple[str, StateDict]],
    test_sets: Sequence[TestSet],
    batch_size: int,
    precision: Precision = FP32,
) -> dict[str, float]:
    """Each ``(domain, weights)`` client's model on its domain's test split; a domain's
    accuracy is the plain mean over its clients (every client counts alike, as every
    client's user would). ``model`` is loaded with each client's weights in turn."""
    by_domain = {test_set.domain: test_set for test_set in test_sets}
    scores: dict[str, list[float]] = {}
    for domain, weights in clients:
        model.load_state_dict(weights)
        accuracy = evaluate(model, [by_domain[domain]], batch_size, precision)[domain]
        scores.setdefault(domain, []).append(accuracy)
    return {domain: sum(values) / len(values) for domain, values in scores.items()}


def mean_accuracy(per_domain: dict[str, float]) -> float:
    """Unweighted mean over domains, as the paper's AVG column."""
    return sum(per_domain.values()) / len(per_domain)


def evaluate_round(
    state: GlobalState,
    updates: Sequence[ClientUpdate],
    rejected: dict[str, str],
    started: float,
    *,
    model: nn.Module,
    test_sets: Sequence[TestSet],
    eval_batch_size: int,
    precision: Precision,
    privacy: PrototypePrivacy,
    server_step: dict[str, dict[str, float]] | None = None,
    validation_sets: Sequence[TestSet] = (),
    holdout_sets: Sequence[TestSet] = (),
) -> RoundRecord:
    """Test the aggregated model on every domain and record the round.

    Shared by the simulator and the Flower server so both write the same records.
    ``started`` is when the round's training began (``time.perf_counter``).
    """
    trained = time.perf_counter()
    model.load_state_dict(state.weights)
    per_domain = evaluate(model, test_sets, eval_batch_size, precision)
    worst, worst_accuracy = worst_domain(per_domain)
    sizes = {test_set.domain: len(test_set.data) for test_set in test_sets}
    validation = evaluate(model, validation_sets, eval_batch_size, precision) or None
    unseen = evaluate(model, holdout_sets, eval_batch_size, precision) or None
    return RoundRecord(
        round=state.round,
        per_domain_accuracy=per_domain,
        mean_accuracy=mean_accuracy(per_domain),
        train=_weighted_metrics(updates),
        clients={u.client_id: u.metrics for u in updates},
        num_prototypes=len(state.prototypes) if state.prototypes else 0,
        train_seconds=trained - started,
        eval_seconds=time.perf_counter() - trained,
        rejected=rejected,
        privacy_epsilon=epsilons(privacy, state.round)[-1] if privacy.enabled else None,
        domain_std=domain_std(per_domain),
        worst_domain=worst,
        worst_domain_accuracy=worst_accuracy,
        pooled_accuracy=pooled_accuracy(per_domain, sizes),
        server_step=server_step or None,
        validation_accuracy=validation,
        validation_mean_accuracy=mean_accuracy(validation) if validation else None,
        holdout_accuracy=unseen,
        holdout_mean_accuracy=mean_accuracy(unseen) if unseen else None,
    )


def _weighted_metrics(updates: Sequence[ClientUpdate]) -> dict[str, float]:
    total = sum(u.num_samples for u in updates)
    keys = sorted({key for u in updates for key in u.metrics})
    return {
        key: sum(u.metrics.get(key, 0.0) * u.num_samples for u in updates) / total for key in keys
    }
