"""Evaluation of the global model: top-1 accuracy on every domain's full test split."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from protofl.engine.data import TestSet
from protofl.engine.precision import FP32, Precision


def evaluate(
    model: nn.Module, test_sets: Sequence[TestSet], batch_size: int, precision: Precision = FP32
) -> dict[str, float]:
    """Top-1 accuracy (a fraction in [0, 1]) per domain, in inference mode."""
    was_training = model.training
    model.eval()
    accuracies = {}
    with torch.inference_mode(), precision.autocast():
        for test_set in test_sets:
            correct = torch.zeros((), dtype=torch.int64, device=test_set.data.labels.device)
            for start in range(0, len(test_set.data), batch_size):
                batch = test_set.data.inputs[start : start + batch_size]
                inputs = precision.prepare_input(test_set.transform.eval(batch))
                labels = test_set.data.labels[start : start + batch_size]
                logits = model.head(model.features(inputs))  # type: ignore[operator]
                correct += (logits.argmax(dim=1) == labels).sum()
            accuracies[test_set.domain] = int(correct) / len(test_set.data)
    model.train(was_training)
    return accuracies


def mean_accuracy(per_domain: dict[str, float]) -> float:
    """Unweighted mean over domains, as the paper's AVG column."""
    return sum(per_domain.values()) / len(per_domain)
