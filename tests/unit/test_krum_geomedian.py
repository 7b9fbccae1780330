"""Krum, Multi-Krum and the geometric median as weight rules, against their definitions on
constructed cases: which state Krum keeps (worked by hand), the Weiszfeld fixed point against
a brute-force minimiser, order invariance, and whole states (integer counters included)."""

from __future__ import annotations

import itertools

import pytest
import torch

from protofl import RunConfig, RunResult, train_federated
from protofl.config.robustness import WEIGHT_RULES
from protofl.federation.aggregation import GeometricMedian, Krum
from protofl.federation.defences import RoundReference
from protofl.federation.rules import RULES, make_combiner

from tiny_data import TinyNet, tiny_clients

# five clients on a line; e is far away. Squared distances to the two nearest others
# (K - f - 2 = 2 with f = floor(0.2 x 5) = 1):
#   a=0: b .01, c .0625 -> .0725     b=.1: a .01, c .0225 -> .0325
#   c=.25: d .0025, b .0225 -> .025  d=.3: c .0025, b .04 -> .0425     e=10: far
POINTS = {"a": 0.0, "b": 0.1, "c": 0.25, "d": 0.3, "e": 10.0}


def state(x: float, counter: int) -> dict[str, torch.Tensor]:
    return {
        "w": torch.tensor([x, 2 * x]) / 5**0.5,  # |w| distance = |x| (scaled by sqrt(5)/sqrt(5))
        "running_mean": torch.tensor([x]) * 0,  # a buffer: identical, adds no distance
        "num_batches_tracked": torch.tensor(counter),
    }


def combine(rule: object, names: list[str]) -> object:
    for index, name in enumerate(names):
        rule.add(state(POINTS[name], counter=10 + index), 1)  # type: ignore[attr-defined]
    return rule


def test_krum_keeps_the_state_whose_nearest_neighbours_are_closest_whole() -> None:
    names = list(POINTS)
    krum = combine(Krum(0.2), names)
    assert krum.chosen() == [names.index("c")]  # type: ignore[attr-defined]
    result = krum.result()  # type: ignore[attr-defined]
    expected = state(POINTS["c"], counter=10 + names.index("c"))
    for key, value in expected.items():
        assert torch.equal(result[key], value) and result[key].dtype == value.dtype


def test_krum_does_not_depend_on_the_order_of_clients() -> None:
    for names in itertools.permutations(POINTS):
        krum = combine(Krum(0.2), list(names))
        assert names[krum.chosen()[0]] == "c"  # type: ignore[attr-defined]


def test_krum_says_which_state_it_kept() -> None:
    names = list(POINTS)
    krum = combine(Krum(0.2), names)
    with pytest.raises(RuntimeError, match="call result"):  # nothing kept yet
        krum.shares()  # type: ignore[attr-defined]
    krum.result()  # type: ignore[attr-defined]
    assert krum.shares() == [1.0 if n == "c" else 0.0 for n in names]  # type: ignore[attr-defined]
    multi = combine(Krum(0.2, multi=True), names)
    multi.result()  # type: ignore[attr-defined]
    assert multi.shares() == [0.25, 0.25, 0.25, 0.25, 0.0]  # type: ignore[attr-defined]


def test_multi_krum_averages_the_k_minus_f_best_states() -> None:
    names = list(POINTS)
    multi = combine(Krum(0.2, multi=True), names)
    picked = sorted(names[i] for i in multi.chosen())  # type: ignore[attr-defined]
    assert picked == ["a", "b", "c", "d"]  # e, the outlier, is out
    result = multi.result()  # type: ignore[attr-defined]
    mean_x = sum(POINTS[n] for n in "abcd") / 4
    torch.testing.assert_close(result["w"], torch.tensor([mean_x, 2 * mean_x]) / 5**0.5)
    assert result["num_batches_tracked"].dtype == torch.int64  # counters stay integers
    assert int(result["num_batches_tracked"]) == round((10 + 11 + 12 + 13) / 4)


def brute_force_median(points: torch.Tensor) -> torch.Tensor:
    """The point of a fine grid around the data with the smallest sum of distances."""
    xs = torch.linspace(-1, 6, 701, dtype=torch.float64)
    grid = torch.cartesian_prod(xs, xs)  # [G, 2]
    cost = torch.cdist(grid, points.double()).sum(dim=1)
    return grid[cost.argmin()]


def test_geometric_median_is_the_minimiser_of_the_summed_distances() -> None:
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.2], [5.0, 5.0]])
    rule = GeometricMedian()
    for index, point in enumerate(points):
        rule.add({"w": point, "n": torch.tensor(index)}, 100)
    with pytest.raises(RuntimeError, match="call result"):
        rule.shares()
    result = rule.result()
    torch.testing.assert_close(result["w"].double(), brute_force_median(points), atol=0.011, rtol=0)
    weights = rule.weights()
    assert weights.sum().item() == pytest.approx(1.0)
    assert int(weights.argmin()) == 4  # the outlier weighs least
    # the shares it reports are the weights of the mean it returned
    shares = torch.tensor(rule.shares(), dtype=torch.float64)
    torch.testing.assert_close(shares, weights)
    torch.testing.assert_close(result["w"].double(), shares @ points.double())
    reordered = GeometricMedian()
    for index in (4, 2, 0, 3, 1):
        reordered.add({"w": points[index], "n": torch.tensor(index)}, 1)
    torch.testing.assert_close(reordered.result()["w"], result["w"], atol=1e-6, rtol=0)


def brute_force_weighted_median(points: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The grid point with the smallest sum of alpha-weighted distances to the points."""
    xs = torch.linspace(-1, 6, 701, dtype=torch.float64)
    grid = torch.cartesian_prod(xs, xs)
    cost = (torch.cdist(grid, points.double()) * alpha.double()).sum(dim=1)
    return grid[cost.argmin()]


def test_rfa_minimises_the_sample_weighted_sum_of_distances() -> None:
    """RFA (Pillutla et al.): argmin_z sum_i alpha_i ||z - x_i||, alpha_i = n_i / n."""
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.2], [5.0, 5.0]])
    samples = [10, 10, 10, 10, 200]  # the far point holds most of the data
    rule = GeometricMedian(by_samples=True)
    for index, (point, n) in enumerate(zip(points, samples, strict=True)):
        rule.add({"w": point, "n": torch.tensor(index)}, n)
    alpha = torch.tensor(samples, dtype=torch.float64) / sum(samples)
    expected = brute_force_weighted_median(points, alpha)
    result = rule.result()
    torch.testing.assert_close(result["w"].double(), expected, atol=0.011, rtol=0)
    # alpha_5 = 200/240 > 1/2: the weighted median is that point itself, not the counted one
    torch.testing.assert_close(expected, points[4].double(), atol=0.011, rtol=0)
    unweighted = GeometricMedian()
    for index, point in enumerate(points):
        unweighted.add({"w": point, "n": torch.tensor(index)}, samples[index])
    assert float((unweighted.result()["w"] - points[4]).norm()) > 3  # counts clients: far off
    # shares are the weights of the mean returned; the order of arrival does not matter
    shares = torch.tensor(rule.shares(), dtype=torch.float64)
    torch.testing.assert_close(result["w"].double(), shares @ points.double())
    reordered = GeometricMedian(by_samples=True)
    for index in (4, 2, 0, 3, 1):
        reordered.add({"w": points[index], "n": torch.tensor(index)}, samples[index])
    torch.testing.assert_close(reordered.result()["w"], result["w"], atol=1e-6, rtol=0)


def test_rfa_with_equal_sample_counts_is_the_geometric_median() -> None:
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.2], [5.0, 5.0]])
    by_samples, counted = GeometricMedian(by_samples=True), GeometricMedian()
    for point in points:
        by_samples.add({"w": point}, 7)
        counted.add({"w": point}, 7)
    torch.testing.assert_close(by_samples.result()["w"], counted.result()["w"], atol=0, rtol=0)


@pytest.mark.parametrize("by_samples", [False, True])
def test_weiszfeld_from_the_gram_matrix_equals_a_plain_loop_over_the_parameters(
    by_samples: bool,
) -> None:
    """The rule takes every distance from the K x K Gram matrix of the states; a plain
    Weiszfeld loop that measures each distance on the concatenated parameters must agree,
    also when the parameters sit far from 0 (1e5 + differences of 0.1: cancellation)."""
    generator = torch.Generator().manual_seed(3)
    states = [
        {
            "conv": 1e5 + 0.1 * torch.randn(4, 3, generator=generator),
            "bias": 1e5 + 0.1 * torch.randn(5, generator=generator),
            "num_batches_tracked": torch.tensor(7),  # integer: no part of the distance
        }
        for _ in range(6)
    ]
    sizes = [5, 1, 3, 8, 2, 4]
    rule = GeometricMedian(by_samples=by_samples)
    for one, size in zip(states, sizes, strict=True):
        rule.add(one, size)
    points = [torch.cat([s["conv"].flatten(), s["bias"]]).double() for s in states]
    alpha = torch.tensor(sizes if by_samples else [1] * 6, dtype=torch.float64)
    alpha = alpha / alpha.sum()
    weights = alpha.clone()
    for _ in range(100):
        centre = sum(w * p for w, p in zip(weights, points, strict=True))
        distances = torch.stack([torch.linalg.norm(p - centre) for p in points])
        inverse = alpha / distances.clamp(min=1e-10)
        weights = inverse / inverse.sum()
    torch.testing.assert_close(rule.weights(), weights, atol=1e-9, rtol=0)


def test_every_rule_the_config_accepts_is_built() -> None:
    assert set(RULES) == set(WEIGHT_RULES)
    # norm-clip and fltrust measure updates from the round's start; fltrust needs the root
    reference = RoundReference({"w": torch.zeros(1)}, root={"w": torch.ones(1)})
    for rule in RULES:
        make_combiner(rule, reference=reference)


def tiny_run(rule: str, rounds: int) -> RunResult:
    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=rounds, local_epochs=1, batch_size=16, precision="fp32",
                       algorithm="fedavg", aggregation=rule)  # fmt: skip
    return train_federated(clients, tests, TinyNet, config)


@pytest.mark.parametrize("rule", ["krum", "multi-krum", "geometric-median", "rfa"])
def test_a_run_with_the_rule_trains_and_records_each_clients_share(rule: str) -> None:
    result = tiny_run(rule, rounds=2)
    assert len(result.history) == 2 and 0.0 <= result.summary["mean_accuracy"] <= 1.0
    for record in result.history:
        shares = {client: values["weight"] for client, values in (record.server_step or {}).items()}
        assert set(shares) == set(record.clients)  # every client that sent an update
        assert sum(shares.values()) == pytest.approx(1.0)
        if rule == "krum":
            assert sorted(shares.values())[-1] == 1.0  # one client, whole


def test_the_plain_mean_records_no_shares() -> None:
    assert tiny_run("mean", rounds=1).history[0].server_step is None
