"""FPL's loss terms against hand-computed values and a plain per-sample loop."""

from __future__ import annotations

import math

import pytest
import torch

from protofl.algorithms.losses import cluster_contrastive_loss, unbiased_consistency_loss


def loop_cpcl(features, labels, prototypes, prototype_labels, temperature):  # type: ignore[no-untyped-def]
    """The reference's per-sample form: -log(sum_pos exp(s) / sum_all exp(s)), sum / B."""
    total = torch.zeros(())
    for feature, label in zip(features, labels, strict=True):
        positive = prototype_labels == label
        if not positive.any():
            continue
        sims = torch.stack(
            [torch.cosine_similarity(feature, p, dim=0) / temperature for p in prototypes]
        )
        # float64 exp so the loop itself does not overflow at small temperatures
        exp = sims.double().exp()
        total = total + (-torch.log(exp[positive].sum() / exp.sum())).float()
    return total / len(features)


def loop_upcr(features, labels, unbiased, has_prototype, reduction):  # type: ignore[no-untyped-def]
    total = torch.zeros(())
    for feature, label in zip(features, labels, strict=True):
        if has_prototype[label]:
            squared = (feature - unbiased[label]) ** 2
            total = total + (squared.mean() if reduction == "mean" else squared.sum())
    return total / len(features)


def random_case(seed: int, batch: int = 12, dim: int = 8, classes: int = 5):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(seed)
    # post-ReLU-like features; no all-zero row, whose direction (and cosine gradient) is undefined
    features = torch.randn(batch, dim, generator=generator).relu() + 0.01
    labels = torch.randint(0, classes, (batch,), generator=generator)
    prototype_labels = torch.tensor([0, 0, 1, 2, 2, 2, 3])  # class 4 has no prototype
    prototypes = torch.randn(len(prototype_labels), dim, generator=generator)
    return features, labels, prototypes, prototype_labels


def test_cpcl_hand_computed() -> None:
    features = torch.tensor([[1.0, 0.0]])
    prototypes = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # cosine ignores the norms
    loss = cluster_contrastive_loss(
        features, torch.tensor([0]), prototypes, torch.tensor([0, 1]), temperature=1.0
    )
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))  # -log(e / (e + 1))


def test_cpcl_multi_positive_and_missing_class_hand_computed() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    prototypes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 2])  # class 2 has no prototype: contributes 0, counts in B
    loss = cluster_contrastive_loss(
        features, labels, prototypes, torch.tensor([0, 0, 1]), temperature=0.5
    )
    s = [1 / 0.5, (1 / math.sqrt(2)) / 0.5, 0.0]
    first = -math.log((math.exp(s[0]) + math.exp(s[1])) / sum(math.exp(v) for v in s))
    assert loss.item() == pytest.approx(first / 2, rel=1e-5)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("temperature", [0.02, 0.5])
def test_cpcl_matches_loop_values_and_gradients(seed: int, temperature: float) -> None:
    features, labels, prototypes, prototype_labels = random_case(seed)
    features_a = features.clone().requires_grad_()
    features_b = features.clone().requires_grad_()
    fast = cluster_contrastive_loss(features_a, labels, prototypes, prototype_labels, temperature)
    slow = loop_cpcl(features_b, labels, prototypes, prototype_labels, temperature)
    fast.backward()
    slow.backward()
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5, abs=1e-6)
    assert features_a.grad is not None and features_b.grad is not None
    torch.testing.assert_close(features_a.grad, features_b.grad, rtol=1e-4, atol=1e-5)


def test_cpcl_small_temperature_stays_finite() -> None:
    """The reference's raw exp overflows below tau ~ 0.011 (NaN); logsumexp does not."""
    features, labels, prototypes, prototype_labels = random_case(0)
    features.requires_grad_()
    loss = cluster_contrastive_loss(features, labels, prototypes, prototype_labels, 0.001)
    loss.backward()
    assert torch.isfinite(loss)
    assert features.grad is not None and torch.isfinite(features.grad).all()
    raw = (torch.tensor(1.0) / 0.001).exp()
    assert torch.isinf(raw)  # what the reference's formulation would compute


def test_cpcl_no_positive_anywhere_gives_zero_and_finite_grad() -> None:
    features = torch.randn(3, 4, requires_grad=True)
    loss = cluster_contrastive_loss(
        features, torch.tensor([5, 5, 5]), torch.randn(2, 4), torch.tensor([0, 1]), 0.02
    )
    loss.backward()
    assert loss.item() == 0.0
    assert features.grad is not None and torch.equal(features.grad, torch.zeros(3, 4))


def test_upcr_hand_computed() -> None:
    features = torch.tensor([[1.0, 2.0], [5.0, 5.0]])
    unbiased = torch.tensor([[0.0, 0.0], [9.0, 9.0]])
    has = torch.tensor([True, False])
    labels = torch.tensor([0, 1])  # sample 2's class has no prototype: 0, but counts in B
    assert unbiased_consistency_loss(features, labels, unbiased, has).item() == 2.5 / 2
    assert unbiased_consistency_loss(features, labels, unbiased, has, "sum").item() == 5.0 / 2


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_upcr_matches_loop(seed: int, reduction: str) -> None:
    features, labels, _, _ = random_case(seed)
    generator = torch.Generator().manual_seed(100 + seed)
    unbiased = torch.randn(5, features.shape[1], generator=generator)
    has = torch.tensor([True, False, True, True, False])
    fast = unbiased_consistency_loss(features, labels, unbiased, has, reduction)  # type: ignore[arg-type]
    slow = loop_upcr(features, labels, unbiased, has, reduction)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-6)


def test_upcr_rejects_unknown_reduction() -> None:
    with pytest.raises(ValueError, match="'mean' or 'sum'"):
        unbiased_consistency_loss(
            torch.zeros(1, 2),
            torch.tensor([0]),
            torch.zeros(1, 2),
            torch.tensor([True]),
            "max",  # type: ignore[arg-type]
        )
