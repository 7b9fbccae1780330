"""FedHEAL, FedPLVM and FedDAP maths against hand-computed values and plain loops."""

from __future__ import annotations

import math

import pytest
import torch

from protofl.algorithms.feddap_maths import (
    cross_domain_contrastive_loss,
    domain_alignment_loss,
    merge_domain_prototypes,
    perturb_prototypes,
)
from protofl.algorithms.fedheal_maths import (
    client_consistency,
    consistency_mask,
    fedheal_client_weights,
    fedheal_combine,
    masked_weighted_update,
    update_distance,
    updated_positive_fraction,
)
from protofl.algorithms.fedplvm_maths import (
    NegativeCosine,
    alpha_power,
    alpha_sparsity_contrastive_loss,
    cosine_correction_loss,
    global_cluster_prototypes,
    local_cluster_prototypes,
)
from protofl.algorithms.losses import cluster_contrastive_loss
from protofl.core.payloads import Prototypes

INV_SQRT2 = 1 / math.sqrt(2)


def infonce(positive: list[float], others: list[float], temperature: float) -> float:
    """-log(sum_pos exp(s/T) / sum_all exp(s/T)) for similarities s, written out."""
    pos = sum(math.exp(s / temperature) for s in positive)
    return -math.log(pos / (pos + sum(math.exp(s / temperature) for s in others)))


# ---------------------------------------------------------------- FedHEAL


def test_first_round_keeps_every_coordinate() -> None:
    update = torch.tensor([1.0, -2.0, 0.0])
    assert consistency_mask(update, torch.zeros(3), rounds_seen=0).all()


def test_mask_keeps_coordinates_whose_past_signs_agree_above_threshold() -> None:
    update = torch.tensor([1.0, -1.0, -1.0, 1.0, 0.0])
    positive_fraction = torch.tensor([0.2, 0.5, 0.9, 0.3, 0.31])
    # agreeing fractions: 0.2, 0.5, 0.1, 0.3 (not > 0.3), 0.31 (a zero update counts positive)
    mask = consistency_mask(update, positive_fraction, rounds_seen=4, threshold=0.3)
    assert mask.tolist() == [False, True, False, False, True]


def test_positive_fraction_is_a_running_mean_of_signs() -> None:
    update = torch.tensor([2.0, -2.0, 0.0])
    first = updated_positive_fraction(update, torch.full((3,), 0.7), rounds_seen=0)
    assert first.tolist() == [1.0, 0.0, 1.0]  # the first round ignores the old value
    later = updated_positive_fraction(update, torch.tensor([0.5, 0.5, 0.0]), rounds_seen=2)
    torch.testing.assert_close(later, torch.tensor([2 / 3, 1 / 3, 1 / 3]))


def test_client_weights_by_hand() -> None:
    seen = torch.tensor([False, False])
    normalised, weights, increments = fedheal_client_weights(
        torch.tensor([1.0, 3.0]), torch.zeros(2), torch.zeros(2), seen, distance_momentum=0.4
    )
    # newcomers start at 1/K = 0.5; increments 0.4 * [1/4, 3/4]
    torch.testing.assert_close(increments, torch.tensor([0.1, 0.3], dtype=torch.float64))
    torch.testing.assert_close(weights, torch.tensor([0.6, 0.8], dtype=torch.float64))
    torch.testing.assert_close(normalised, torch.tensor([3 / 7, 4 / 7], dtype=torch.float64))
    normalised, weights, increments = fedheal_client_weights(
        torch.tensor([2.0, 2.0]), weights, increments, ~seen, distance_momentum=0.4
    )
    # 0.6 * [0.1, 0.3] + 0.4 * [0.5, 0.5] = [0.26, 0.38]
    torch.testing.assert_close(increments, torch.tensor([0.26, 0.38], dtype=torch.float64))
    expected = torch.tensor([0.86, 1.18], dtype=torch.float64)
    torch.testing.assert_close(normalised, expected / expected.sum())


def test_all_zero_distances_give_zero_shares_not_nan() -> None:
    normalised, _, _ = fedheal_client_weights(
        torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.bool)
    )
    torch.testing.assert_close(normalised, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_distance_sums_per_tensor_norms_of_parameters_only() -> None:
    update = {
        "layer.weight": torch.tensor([3.0, 4.0]),
        "layer.bias": torch.tensor([0.0, 0.0, 1.0]),
        "bn.running_mean": torch.tensor([100.0]),
    }
    assert update_distance(update).item() == pytest.approx(6.0)
    assert update_distance(update, frozenset({"layer.bias"})).item() == pytest.approx(1.0)


def test_masked_weighted_update_by_hand() -> None:
    global_weights = {"w": torch.zeros(4)}
    updates = [{"w": torch.tensor([1.0, 0.0, 3.0, 0.0])}, {"w": torch.tensor([3.0, 4.0, 0.0, 0.0])}]
    masks = [
        {"w": torch.tensor([True, False, True, False])},
        {"w": torch.tensor([True, True, False, False])},
    ]
    combined = masked_weighted_update(global_weights, updates, masks, torch.tensor([0.25, 0.75]))
    # coordinate 0: (0.25 * 1 + 0.75 * 3) / 1; 1 and 2: the one client that kept it; 3: none
    torch.testing.assert_close(combined["w"], torch.tensor([-2.5, -4.0, -3.0, 0.0]))


def test_integer_buffers_stay_integer_and_round_to_nearest() -> None:
    global_weights = {"bn.num_batches_tracked": torch.tensor(10)}
    locals_ = [
        {"bn.num_batches_tracked": torch.tensor(13)},
        {"bn.num_batches_tracked": torch.tensor(16)},
    ]
    result = fedheal_combine(
        global_weights,
        locals_,
        [{}, {}],
        [0, 0],
        torch.tensor([0.75, 0.25]),  # seen clients keep these when every distance is 0
        torch.zeros(2),
        torch.tensor([True, True]),
        frozenset({"unused"}),
    )
    # distances are over parameters only (none here), so the weights stay at 0.75 / 0.25 ...
    torch.testing.assert_close(
        result.aggregation_weights, torch.tensor([0.75, 0.25], dtype=torch.float64)
    )
    # ... and 10 + 0.75 * 3 + 0.25 * 6 = 13.75, rounded (the reference truncates to 13)
    value = result.weights["bn.num_batches_tracked"]
    assert value.dtype == torch.int64 and value.item() == 14


def plain_fedheal_round(global_weights, locals_, histories, rounds, weights, increments, names):  # type: ignore[no-untyped-def]
    """The reference's per-client, per-coordinate steps written as Python loops over floats."""
    count = len(locals_)
    updates, masks, new_histories, distances = [], [], [], []
    for local, history in zip(locals_, histories, strict=True):
        update, mask, new_history, distance = {}, {}, {}, 0.0
        for key, value in global_weights.items():
            flat_update = (value - local[key]).flatten().tolist()
            flat_history = history[key].flatten().tolist() if rounds else [0.0] * len(flat_update)
            keep, fraction = [], []
            for u, h in zip(flat_update, flat_history, strict=True):
                agree = h if u >= 0 else 1 - h
                keep.append(rounds == 0 or agree > 0.3)
                fraction.append(((h * rounds) + (u >= 0)) / (rounds + 1))
            update[key] = [u * k for u, k in zip(flat_update, keep, strict=True)]
            mask[key], new_history[key] = keep, fraction
            if key in names:
                distance += math.sqrt(sum(u * u for u in update[key]))
        updates.append(update)
        masks.append(mask)
        new_histories.append(new_history)
        distances.append(distance)
    total = sum(distances)
    new_increments = [0.6 * increments[k] + 0.4 * distances[k] / total for k in range(count)]
    new_weights = [weights[k] + new_increments[k] for k in range(count)]
    share = [w / sum(new_weights) for w in new_weights]
    result = {}
    for key, value in global_weights.items():
        flat = value.flatten().tolist()
        for i in range(len(flat)):
            norm = sum(share[k] * masks[k][key][i] for k in range(count))
            if norm > 0:
                flat[i] -= (
                    sum(share[k] * masks[k][key][i] * updates[k][key][i] for k in range(count))
                    / norm
                )
        result[key] = torch.tensor(flat).view(value.shape)
    return result, new_histories, new_weights, new_increments


def test_fedheal_combine_matches_plain_loop_over_rounds() -> None:
    generator = torch.Generator().manual_seed(0)
    names = frozenset({"a", "b"})
    global_weights = {
        "a": torch.randn(2, 3, generator=generator),
        "b": torch.randn(4, generator=generator),
    }
    drift = [
        {k: torch.randn(v.shape, generator=generator) for k, v in global_weights.items()}
        for _ in range(3)
    ]
    histories: list[dict[str, torch.Tensor]] = [{}, {}, {}]
    weights, increments = torch.zeros(3), torch.zeros(3)
    plain_histories = histories
    plain_weights, plain_increments = [1 / 3] * 3, [0.0] * 3
    dropped = 0
    for rounds in range(4):
        locals_ = [
            {
                k: v + d[k] + torch.randn(v.shape, generator=generator)
                for k, v in global_weights.items()
            }
            for d in drift
        ]
        seen = torch.full((3,), rounds > 0)
        result = fedheal_combine(
            global_weights, locals_, histories, [rounds] * 3, weights, increments, seen, names
        )
        masks = client_consistency(global_weights, locals_[0], histories[0], rounds)[1]
        dropped += sum(int((~mask).sum()) for mask in masks.values())
        expected, plain_histories, plain_weights, plain_increments = plain_fedheal_round(
            global_weights,
            locals_,
            [{k: torch.tensor(v) for k, v in h.items()} for h in plain_histories],
            rounds,
            plain_weights,
            plain_increments,
            names,
        )
        for key in global_weights:
            torch.testing.assert_close(result.weights[key], expected[key])
        torch.testing.assert_close(
            result.client_weights, torch.tensor(plain_weights, dtype=torch.float64)
        )
        global_weights, histories = result.weights, result.histories
        weights, increments = result.client_weights, result.client_increments
    assert dropped > 0  # the masks did drop coordinates, so the comparison covers them


# ---------------------------------------------------------------- FedPLVM


def test_alpha_sparsity_loss_by_hand() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    proto_labels = torch.tensor([0, 1, 1])
    root = INV_SQRT2**0.25  # (1/sqrt 2)^alpha
    loss = alpha_sparsity_contrastive_loss(features, labels, prototypes, proto_labels, 0.25, 0.5)
    first = infonce([1.0], [0.0, root], 0.5)
    second = infonce([1.0, root], [0.0], 0.5)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-5)


def plain_alpha_loss(features, labels, prototypes, proto_labels, alpha, temperature):  # type: ignore[no-untyped-def]
    total = 0.0
    for feature, label in zip(features.double(), labels.tolist(), strict=True):
        scores = [
            max(torch.cosine_similarity(feature, p.double(), dim=0).item(), 0.0) ** alpha
            for p in prototypes
        ]
        positive = [s for s, y in zip(scores, proto_labels.tolist(), strict=True) if y == label]
        if positive:
            others = [s for s, y in zip(scores, proto_labels.tolist(), strict=True) if y != label]
            total += infonce(positive, others, temperature)
    return total / len(features)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_sparsity_loss_matches_plain_loop(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(10, 4, generator=generator).relu() + 0.01
    labels = torch.randint(0, 3, (10,), generator=generator)
    labels[0] = 3  # a class without prototypes: contributes 0, counts in B
    prototypes = torch.randn(7, 4, generator=generator)  # some negative cosines: clamped
    proto_labels = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    loss = alpha_sparsity_contrastive_loss(features, labels, prototypes, proto_labels, 0.25, 0.07)
    expected = plain_alpha_loss(features, labels, prototypes, proto_labels, 0.25, 0.07)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_alpha_one_is_the_fpl_contrastive_loss() -> None:
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(8, 5, generator=generator).relu() + 0.01
    labels = torch.randint(0, 3, (8,), generator=generator)
    prototypes = torch.rand(6, 5, generator=generator)
    proto_labels = torch.tensor([0, 1, 1, 2, 2, 2])
    ours = alpha_sparsity_contrastive_loss(features, labels, prototypes, proto_labels, 1.0, 0.2)
    fpl = cluster_contrastive_loss(features, labels, prototypes, proto_labels, 0.2)
    torch.testing.assert_close(ours, fpl)


def test_negative_cosines_clamp_or_keep_their_sign() -> None:
    cosine = torch.tensor([-0.0625, 0.0, 0.0625, 1.0])
    torch.testing.assert_close(alpha_power(cosine, 0.5), torch.tensor([0.0, 0.0, 0.25, 1.0]))
    torch.testing.assert_close(
        alpha_power(cosine, 0.5, "signed"), torch.tensor([-0.25, 0.0, 0.25, 1.0])
    )


@pytest.mark.parametrize("negative", ["clamp", "signed"])
def test_alpha_power_gradient_is_finite_at_zero_and_exact_elsewhere(
    negative: NegativeCosine,
) -> None:
    cosine = torch.tensor([0.0, 0.25, -0.25], requires_grad=True)
    alpha_power(cosine, 0.25, negative).sum().backward()
    assert cosine.grad is not None and torch.isfinite(cosine.grad).all()
    assert cosine.grad[0].item() == 0.0
    assert cosine.grad[1].item() == pytest.approx(0.25 * 0.25**-0.75)
    assert cosine.grad[2].item() == pytest.approx(
        0.0 if negative == "clamp" else 0.25 * 0.25**-0.75
    )


def test_correction_loss_by_hand_and_missing_class() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
    labels = torch.tensor([0, 1, 2])
    class_prototypes = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    has = torch.tensor([True, True, False])
    loss = cosine_correction_loss(features, labels, class_prototypes, has)
    assert loss.item() == pytest.approx(2 * (INV_SQRT2 - 1) ** 2 / 3, rel=1e-6)


def test_local_clusters_split_two_modes_of_a_class() -> None:
    features = torch.tensor(
        [[1.0, 0.0, 0.0], [0.98, 0.05, 0.0], [0.96, 0.0, 0.05],  # class 0, mode A
         [0.0, 1.0, 0.0], [0.05, 0.97, 0.0], [0.0, 0.99, 0.04],  # class 0, mode B
         [0.0, 0.0, 1.0]]  # class 2, a single sample
    )  # fmt: skip
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 2])
    clusters = local_cluster_prototypes(features, labels, num_classes=3)
    assert clusters.labels.tolist() == [0, 0, 2]
    assert clusters.support.tolist() == [3, 3, 1]
    means = sorted(clusters.vectors[:2].tolist())
    expected = sorted([features[:3].mean(0).tolist(), features[3:6].mean(0).tolist()])
    torch.testing.assert_close(torch.tensor(means), torch.tensor(expected))


def test_global_level_means_count_each_cluster_once() -> None:
    # class 0: a cluster of three local prototypes near [1, 0] and one of two near [0, 1]
    first = Prototypes(
        torch.tensor([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.0, 3.0]]),
        torch.tensor([0, 0, 0, 1]),
        torch.tensor([50, 9, 2, 7]),
    )
    second = Prototypes(
        torch.tensor([[0.98, -0.05], [0.05, 0.99], [0.0, 1.0]]),
        torch.tensor([0, 0, 1]),
        torch.tensor([1, 1, 1]),
    )
    clusters, means, has = global_cluster_prototypes([first, second], num_classes=3)
    assert clusters.labels.tolist() == [0, 0, 1]
    assert sorted(clusters.support[:2].tolist()) == [2, 3] and clusters.support[2].item() == 2
    near_x = torch.tensor([[1.0, 0.0], [0.99, 0.05], [0.98, -0.05]]).mean(0)
    near_y = torch.tensor([[0.0, 1.0], [0.05, 0.99]]).mean(0)
    expected = torch.stack([(near_x + near_y) / 2, torch.tensor([0.0, 2.0]), torch.zeros(2)])
    torch.testing.assert_close(means, expected)
    assert has.tolist() == [True, True, False]


# ---------------------------------------------------------------- FedDAP


def test_merge_by_hand() -> None:
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [4.0, 2.0]])
    labels = torch.tensor([1, 1, 1, 0])
    domains = torch.tensor([2, 2, 2, 0])
    merged, merged_domains = merge_domain_prototypes(vectors, labels, domains, temperature=1.0)
    assert merged.labels.tolist() == [0, 1] and merged_domains.tolist() == [0, 2]
    assert merged.support.tolist() == [1, 3]
    scores = [1 + INV_SQRT2, 1 + INV_SQRT2, 1 + 2 * INV_SQRT2]  # row sums of cosines
    exp = [math.exp(s) for s in scores]
    weights = torch.tensor([e / sum(exp) for e in exp])
    torch.testing.assert_close(merged.vectors[0], vectors[3])
    torch.testing.assert_close(merged.vectors[1], weights @ vectors[:3])


def test_merge_matches_loop_over_groups() -> None:
    generator = torch.Generator().manual_seed(4)
    vectors = torch.randn(20, 6, generator=generator)
    labels = torch.randint(0, 3, (20,), generator=generator)
    domains = torch.randint(0, 2, (20,), generator=generator)
    merged, merged_domains = merge_domain_prototypes(vectors, labels, domains, temperature=0.05)
    for vector, label, domain in zip(merged.vectors, merged.labels, merged_domains, strict=True):
        members = vectors[(labels == label) & (domains == domain)]
        scores = torch.stack(
            [
                torch.stack([torch.cosine_similarity(p, q, dim=0) for q in members]).sum()
                for p in members
            ]
        )
        expected = (torch.softmax(scores / 0.05, dim=0)[:, None] * members).sum(0)
        torch.testing.assert_close(vector, expected, rtol=1e-4, atol=1e-5)


def test_domain_alignment_by_hand() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    proto_vectors = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    proto_labels = torch.tensor([0, 1, 1])
    proto_domains = torch.tensor([0, 1, 0])  # class 1's domain-0 prototype is [-1, 0]
    loss = domain_alignment_loss(features, labels, 0, proto_vectors, proto_labels, proto_domains)
    # sample 0: 1 - 1/sqrt2; sample 1 aligns with [-1, 0]: 1 - 0; sample 2: 1 - 1
    assert loss.item() == pytest.approx((1 - INV_SQRT2 + 1 + 0) / 3, abs=1e-6)
    no_target = domain_alignment_loss(
        features, labels, 5, proto_vectors, proto_labels, proto_domains
    )
    assert no_target.item() == 0.0


def cross_domain_case() -> tuple[torch.Tensor, ...]:
    proto_vectors = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    proto_labels = torch.tensor([0, 0, 1, 1])
    proto_domains = torch.tensor([0, 1, 1, 2])
    return proto_vectors, proto_labels, proto_domains


def test_cross_domain_contrastive_by_hand() -> None:
    proto_vectors, proto_labels, proto_domains = cross_domain_case()
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 2])  # class 2 has no positive: contributes 0
    loss = cross_domain_contrastive_loss(
        features, labels, 0, proto_vectors, proto_labels, proto_domains, temperature=0.5
    )
    # the domain-0 prototype never takes part
    first = infonce([1.0], [0.0, INV_SQRT2], 0.5)
    second = infonce([1.0, INV_SQRT2], [0.0], 0.5)
    assert loss.item() == pytest.approx((first + second) / 3, rel=1e-5)


def test_cross_domain_contrastive_ignores_own_domain_prototypes() -> None:
    proto_vectors, proto_labels, proto_domains = cross_domain_case()
    features = torch.tensor([[1.0, 0.2], [0.3, 1.0]])
    labels = torch.tensor([0, 1])
    moved = proto_vectors.clone()
    moved[0] = torch.tensor([-1.0, 3.0])  # the domain-0 prototype of class 0

    def loss(vectors: torch.Tensor, domain: int) -> float:
        return cross_domain_contrastive_loss(
            features, labels, domain, vectors, proto_labels, proto_domains, 0.5
        ).item()

    assert loss(moved, 0) == loss(proto_vectors, 0)
    assert loss(moved, 1) != pytest.approx(loss(proto_vectors, 1))


def plain_cross_domain(features, labels, domain, vectors, proto_labels, proto_domains, temperature):  # type: ignore[no-untyped-def]
    total = 0.0
    for feature, label in zip(features, labels.tolist(), strict=True):
        positive: list[float] = []
        negative: list[float] = []
        for vector, y, d in zip(
            vectors, proto_labels.tolist(), proto_domains.tolist(), strict=True
        ):
            if d == domain:
                continue
            s = torch.cosine_similarity(feature.double(), vector.double(), dim=0).item()
            (positive if y == label else negative).append(s)
        if positive and negative:
            total += infonce(positive, negative, temperature)
    return total / len(features)


def test_cross_domain_contrastive_matches_plain_loop() -> None:
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(12, 4, generator=generator)
    labels = torch.randint(0, 3, (12,), generator=generator)
    vectors = torch.randn(9, 4, generator=generator)
    proto_labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    proto_domains = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    loss = cross_domain_contrastive_loss(
        features, labels, 1, vectors, proto_labels, proto_domains, temperature=0.2
    )
    expected = plain_cross_domain(features, labels, 1, vectors, proto_labels, proto_domains, 0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_noise_is_reproducible_and_scaled_by_support() -> None:
    vectors = torch.zeros(2, 20000)
    support = torch.tensor([1, 4])
    first = perturb_prototypes(vectors, support, 0.5, torch.Generator().manual_seed(0))
    again = perturb_prototypes(vectors, support, 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, again)
    assert first[0].std().item() == pytest.approx(0.5, rel=0.03)
    assert first[1].std().item() == pytest.approx(0.125, rel=0.03)
    flat = perturb_prototypes(vectors, support, 0.5, torch.Generator().manual_seed(0), False)
    assert flat[1].std().item() == pytest.approx(0.5, rel=0.03)
