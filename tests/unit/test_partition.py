"""Client drawing: shares, no overlap within a domain, seeds, the all-classes guarantee."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protofl.data.partition import check_allocation, client_share, draw_clients
from protofl.errors import ConfigError, DataError


def labels(count: int, classes: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, classes, count))


def test_shares_are_disjoint_within_a_domain_and_sized() -> None:
    plans = draw_clients({"a": labels(1000), "b": labels(300)}, {"a": 6, "b": 4}, 0.1, 0, 10)
    assert [p.client_id for p in plans] == [f"a-{i}" for i in range(6)] + [
        f"b-{i}" for i in range(4)
    ]
    for domain, size in (("a", 100), ("b", 30)):
        shares = [p.indices for p in plans if p.domain == domain]
        assert all(len(s) == size for s in shares)
        combined = np.concatenate(shares)
        assert len(np.unique(combined)) == len(combined)


def test_same_seed_same_clients_other_seed_other_clients() -> None:
    data = {"a": labels(500)}
    first = draw_clients(data, {"a": 3}, 0.2, 7, 10)
    again = draw_clients(data, {"a": 3}, 0.2, 7, 10)
    other = draw_clients(data, {"a": 3}, 0.2, 8, 10)
    assert all(np.array_equal(x.indices, y.indices) for x, y in zip(first, again, strict=True))
    assert not np.array_equal(first[0].indices, other[0].indices)


def test_a_domain_draw_does_not_depend_on_other_domains() -> None:
    alone = draw_clients({"b": labels(400)}, {"b": 2}, 0.1, 0, 10)
    together = draw_clients({"a": labels(900), "b": labels(400)}, {"a": 5, "b": 2}, 0.1, 0, 10)
    assert np.array_equal(alone[0].indices, together[5].indices)


def test_every_client_holds_every_class_when_required() -> None:
    # a rare class with exactly 4 samples and 4 clients: each client must get one of them
    values = np.concatenate([np.arange(9).repeat(30), np.full(4, 9)])
    domain = torch.from_numpy(np.random.default_rng(1).permutation(values))
    plans = draw_clients({"dslr": domain}, {"dslr": 4}, 0.2, 0, 10, ensure_all_classes=True)
    for plan in plans:
        assert set(domain[plan.indices].tolist()) == set(range(10))
        assert len(plan.indices) == client_share(len(domain), 0.2)


def test_impossible_class_coverage_is_explained() -> None:
    values = torch.tensor([c for c in range(10) for _ in range(20)] + [0] * 0)
    values[values == 9] = 8  # class 9 absent
    with pytest.raises(DataError, match=r"class\(es\) \[9\]"):
        draw_clients({"d": values}, {"d": 1}, 0.5, 0, 10, ensure_all_classes=True)


def test_too_many_clients_is_explained() -> None:
    with pytest.raises(ConfigError, match="need 600 samples, but the train split has 500"):
        draw_clients({"a": labels(500)}, {"a": 6}, 0.2, 0, 10)


def test_bad_fraction_and_empty_allocation() -> None:
    with pytest.raises(ConfigError, match="client_fraction"):
        draw_clients({"a": labels(10)}, {"a": 1}, 0.0, 0, 10)
    with pytest.raises(ConfigError, match="no clients"):
        draw_clients({"a": labels(10)}, {}, 0.5, 0, 10)


def test_allocation_typo_is_refused() -> None:
    with pytest.raises(ConfigError, match="'mnsit'"):
        check_allocation(("mnist", "usps"), {"mnsit": 3})
