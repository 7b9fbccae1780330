"""Algorithms own their aggregation: robust weight rules (coordinate-wise median and trimmed
mean) as options of any weight-averaging algorithm, each against a plain computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import AlgorithmContext, build_algorithm
from protofl.algorithms.base import aggregate_all
from protofl.core.payloads import ClientUpdate, GlobalState
from protofl.errors import ConfigError, PayloadError
from protofl.federation.aggregation import CoordinateRule, coordinate_median, trimmed_mean
from protofl.federation.rules import make_combiner

from tiny_data import TinyNet, tiny_clients


def plain_trimmed_mean(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    cut = int(np.floor(fraction * len(values)))
    kept = ordered[cut : len(values) - cut]
    return sum(kept) / len(kept)


@pytest.mark.parametrize("clients", [1, 2, 3, 5, 6])
def test_median_and_trimmed_mean_equal_a_plain_loop(clients: int) -> None:
    generator = torch.Generator().manual_seed(clients)
    stacked = torch.randn(clients, 3, 4, generator=generator, dtype=torch.float64)
    median = coordinate_median(stacked)
    trimmed = trimmed_mean(stacked, 0.2)
    for i in range(3):
        for j in range(4):
            column = stacked[:, i, j].tolist()
            assert median[i, j].item() == pytest.approx(float(np.median(column)))
            assert trimmed[i, j].item() == pytest.approx(plain_trimmed_mean(column, 0.2))


def test_hand_computed_rules_and_integer_counters_stay_integers() -> None:
    states = [
        {"w": torch.tensor([1.0, -4.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([2.0, 0.0]), "n": torch.tensor(4)},
        {"w": torch.tensor([100.0, 1.0]), "n": torch.tensor(8)},
        {"w": torch.tensor([3.0, 2.0]), "n": torch.tensor(5)},
    ]
    median, trimmed = make_combiner("median"), make_combiner("trimmed-mean", 0.25)
    for state in states:
        median.add(state, 10)
        trimmed.add(state, 1)
    got = median.result()
    torch.testing.assert_close(got["w"], torch.tensor([2.5, 0.5]))  # mean of the middle two
    assert got["n"].dtype == torch.int64 and got["n"].item() == 4  # (4 + 5) / 2 rounded
    torch.testing.assert_close(trimmed.result()["w"], torch.tensor([2.5, 0.5]))


def test_trimming_everything_and_mismatched_states_are_refused() -> None:
    rule = CoordinateRule(0.5)  # RunConfig refuses 0.5; built directly it trims both clients
    rule.add({"w": torch.zeros(2)}, 1)
    rule.add({"w": torch.ones(2)}, 1)
    with pytest.raises(PayloadError, match="leaves no client"):
        rule.result()
    with pytest.raises(PayloadError, match="missing"):
        rule.add({"v": torch.zeros(2)}, 1)


def test_one_bad_client_moves_the_median_but_not_far() -> None:
    """FedAvg with the median rule: a client sending huge weights cannot drag the model."""
    context = AlgorithmContext(4, 8, 1, weight_rule="median")
    honest = [{"w": torch.tensor([1.0 + 0.1 * k])} for k in range(4)]
    attack = {"w": torch.tensor([1e6])}
    updates = [ClientUpdate(f"c{k}", 10, s) for k, s in enumerate([*honest, attack])]
    start = GlobalState(0, {"w": torch.tensor([0.0])})
    robust = aggregate_all(build_algorithm("fedavg", {}, context), start, updates)
    plain = aggregate_all(build_algorithm("fedavg", {}, AlgorithmContext(4, 8, 1)), start, updates)
    assert robust.weights["w"].item() == pytest.approx(1.2)
    assert plain.weights["w"].item() > 1e5


def test_a_run_with_each_rule_completes_and_the_rules_relate_as_they_should() -> None:
    finals = {}
    for rule in ("mean", "median", "trimmed-mean"):
        clients, tests = tiny_clients()
        torch.manual_seed(0)
        config = RunConfig(
            algorithm="fpl",
            rounds=2,
            local_epochs=1,
            batch_size=16,
            aggregation=rule,
            trim_fraction=0.25,
            precision="fp32",
        )
        result = train_federated(clients, tests, TinyNet(), config)
        finals[rule] = result.state.weights["classifier.weight"]
    assert not torch.equal(finals["mean"], finals["median"])
    # four clients, one trimmed at each end: the mean of the middle two is the median
    torch.testing.assert_close(finals["median"], finals["trimmed-mean"])


def test_rule_names_and_fractions_are_checked_at_load() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'median'"):
        RunConfig(aggregation="medain")
    with pytest.raises(ConfigError, match="trim_fraction must lie in"):
        RunConfig(aggregation="trimmed-mean", trim_fraction=0.5)
