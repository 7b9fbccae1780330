"""Prototype maths: class means, FINCH partition level, cluster and unbiased prototypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protofl.algorithms.prototypes import (
    PrototypeAccumulator,
    class_means,
    cluster_prototypes,
    finch_partition,
)
from protofl.core.payloads import Prototypes


def test_accumulator_matches_loop_over_batches() -> None:
    generator = torch.Generator().manual_seed(0)
    accumulator = PrototypeAccumulator(num_classes=5, dim=3)
    features, labels = [], []
    for _ in range(4):
        batch_features = torch.randn(7, 3, generator=generator)
        batch_labels = torch.randint(0, 4, (7,), generator=generator)  # class 4 never seen
        accumulator.add(batch_features, batch_labels)
        features.append(batch_features)
        labels.append(batch_labels)
    all_features, all_labels = torch.cat(features), torch.cat(labels)
    result = accumulator.prototypes()
    expected_classes = sorted(set(all_labels.tolist()))
    assert result.labels.tolist() == expected_classes
    for vector, cls, support in zip(result.vectors, result.labels, result.support, strict=True):
        members = all_features[all_labels == cls]
        torch.testing.assert_close(vector, members.mean(dim=0))
        assert support.item() == len(members)


def test_accumulator_detaches() -> None:
    accumulator = PrototypeAccumulator(2, 2)
    features = torch.ones(2, 2, requires_grad=True)
    accumulator.add(features * 2, torch.tensor([0, 1]))
    assert not accumulator.prototypes().vectors.requires_grad


@pytest.mark.parametrize("count", [1, 2])
def test_one_or_two_prototypes_form_one_cluster(count: int) -> None:
    vectors = np.random.default_rng(0).normal(size=(count, 16))
    assert finch_partition(vectors).tolist() == [0] * count


def on_circle(degrees: list[float]) -> np.ndarray:
    radians = np.deg2rad(np.array(degrees))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def two_super_groups() -> np.ndarray:
    """8 tight pairs; the pairs of each half lie on a chain of shrinking gaps.

    FINCH level 0 links each vector to its twin (8 clusters); level 1 links each chain into
    one cluster (2 clusters); level 2 would be a single cluster, which FINCH drops.
    """
    centres = [0, 4, 6, 7, 90, 94, 96, 97]
    return on_circle([c + offset for c in centres for offset in (-0.01, 0.01)])


def test_finch_takes_coarsest_partition_with_at_least_two_clusters() -> None:
    labels = finch_partition(two_super_groups())
    assert len(set(labels[:8].tolist())) == 1
    assert len(set(labels[8:].tolist())) == 1
    assert labels[0] != labels[8]


def test_finch_uses_cosine_distance() -> None:
    # same directions at very different norms: under Euclidean distance vector 0's nearest
    # neighbour would be vector 2; under cosine it is vector 1
    vectors = np.array([[1.0, 0.01], [10.0, 0.1], [0.01, 1.0], [0.2, 20.0]])
    assert finch_partition(vectors).tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])


def loop_cluster_prototypes(local: Prototypes) -> list[tuple[int, torch.Tensor]]:
    result = []
    for cls in sorted(set(local.labels.tolist())):
        members = local.vectors[local.labels == cls]
        assignment = finch_partition(members.double().numpy())
        for cluster in sorted(set(assignment.tolist())):
            result.append((cls, members[torch.from_numpy(assignment == cluster)].mean(dim=0)))
    return result


def test_cluster_prototypes_ragged_classes_and_single_client_class() -> None:
    rng = np.random.default_rng(1)
    parts = []
    # class 0: 16 client prototypes in two super-groups; class 1: one client only (the
    # reference crashes here); class 2: three prototypes
    parts.append((0, np.pad(two_super_groups(), ((0, 0), (0, 2)))))
    parts.append((1, rng.normal(size=(1, 4))))
    parts.append((2, rng.normal(size=(3, 4))))
    vectors = torch.tensor(np.concatenate([p for _, p in parts]), dtype=torch.float32)
    labels = torch.tensor([c for c, p in parts for _ in range(len(p))])
    local = Prototypes(vectors, labels, torch.ones(len(labels), dtype=torch.int64))
    clusters = cluster_prototypes(local)
    expected = loop_cluster_prototypes(local)
    assert clusters.labels.tolist() == [c for c, _ in expected]
    torch.testing.assert_close(clusters.vectors, torch.stack([v for _, v in expected]))
    assert clusters.labels.tolist().count(0) == 2
    assert clusters.labels.tolist().count(1) == 1
    torch.testing.assert_close(clusters.vectors[clusters.labels == 1][0], vectors[16])
    assert clusters.support.sum().item() == len(labels)


def test_class_means_unweighted_and_weighted() -> None:
    prototypes = Prototypes(
        torch.tensor([[0.0, 0.0], [4.0, 2.0], [1.0, 1.0]]),
        torch.tensor([0, 0, 2]),
        torch.tensor([3, 1, 5]),
    )
    means, has = class_means(prototypes, num_classes=4)
    torch.testing.assert_close(means, torch.tensor([[2.0, 1.0], [0, 0], [1, 1], [0, 0]]))
    assert has.tolist() == [True, False, True, False]
    weighted, _ = class_means(prototypes, num_classes=4, weighted=True)
    torch.testing.assert_close(weighted[0], torch.tensor([1.0, 0.5]))  # (0*3 + 4*1) / 4


def test_empty_local_prototypes() -> None:
    assert len(cluster_prototypes(Prototypes.empty(4))) == 0
