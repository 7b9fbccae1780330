"""Bulyan, norm clipping and FLTrust as weight rules, against their papers' definitions on
cases worked by hand; every rule invariant to the order of clients and exact on ResNet-10's
whole state (BatchNorm buffers and integer counters included, nothing at a shifted offset)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import AlgorithmContext, build_algorithm
from protofl.algorithms.base import aggregate_all
from protofl.core.payloads import ClientUpdate, GlobalState
from protofl.errors import ConfigError, PayloadError
from protofl.federation.defences import (
    Bulyan,
    NormClip,
    RoundReference,
    bulyan_selection,
    closest_to_median_mean,
    trim_shortfall,
)
from protofl.federation.rules import RULES, make_combiner
from protofl.models import ResNet10

from tiny_data import TinyNet, tiny_clients

# Seven clients on a line, f = floor(0.2 x 7) = 1, theta = 7 - 2 = 5, beta = 5 - 2 = 3.
# Repeated Krum (squared distances to the K' - f - 2 nearest remaining others, at least 1):
#  1. all seven, 4 neighbours: A 1+4+12.25+25 = 42.25, B 1+1+6.25+16 = 24.25,
#     C 1+2.25+4+9 = 16.25, D 2.25+2.25+6.25+12.25 = 23, E 52.25; F, G thousands -> C
#  2. A B D E F G, 3 neighbours: A 38.25, B 23.25, D 2.25+6.25+12.25 = 20.75, E 43.25 -> D
#  3. A B E F G, 2 neighbours: A 1+25 = 26, B 1+16 = 17, E 41 -> B
#  4. A E F G, 1 neighbour: A 25 and E 25 tie; summed squared distances to the rest:
#     A 25+2500+3600 = 6125 < E 25+2025+4225 = 6275 -> A
#  5. E F G, 1 neighbour: E 2025 and F 2025 tie; E 6250 < F 14125 -> E
# Kept: C D B A E (F and G out). Per coordinate the 3 values nearest the median 2 of
# 0 1 2 3.5 5 are 2, 1, 3.5: their mean is 6.5 / 3.
POINTS = {"A": 0.0, "B": 1.0, "C": 2.0, "D": 3.5, "E": 5.0, "F": 50.0, "G": -60.0}


def line_state(name: str) -> dict[str, torch.Tensor]:
    x = POINTS[name]
    return {
        "w": torch.tensor([x]),
        "bn.running_mean": torch.zeros(2),  # a buffer equal on every client: no distance
        "bn.num_batches_tracked": torch.tensor(10 + list(POINTS).index(name)),
    }


def bulyan_over(names: list[str], assumed_malicious: float = 0.2) -> Bulyan:
    rule = Bulyan(assumed_malicious)
    for name in names:
        rule.add(line_state(name), 1)
    return rule


def test_bulyan_keeps_what_repeated_krum_chooses_worked_by_hand() -> None:
    names = list(POINTS)
    rule = bulyan_over(names)
    assert [names[i] for i in rule.chosen()] == ["C", "D", "B", "A", "E"]
    result = rule.result()
    torch.testing.assert_close(result["w"], torch.tensor([6.5 / 3]))
    assert torch.equal(result["bn.running_mean"], torch.zeros(2))
    # counters of A..E are 10..14: median 12, nearest three 12, 11 and 13 -> 12, an integer
    assert result["bn.num_batches_tracked"].dtype == torch.int64
    assert int(result["bn.num_batches_tracked"]) == 12


def test_bulyan_coordinate_step_averages_the_beta_values_nearest_the_median() -> None:
    stacked = torch.tensor([[0.0, 10.0], [1.0, -1.0], [2.0, 3.0], [3.5, 4.0], [5.0, 100.0]])
    # column 1: median 4 of -1 3 4 10 100; nearest three 4, 3, -1 -> 2
    torch.testing.assert_close(closest_to_median_mean(stacked, 3), torch.tensor([6.5 / 3, 2.0]))
    # an even count: median 2.5 of 1 2 3 10; nearest two 2 and 3
    even = torch.tensor([[10.0], [2.0], [1.0], [3.0]])
    torch.testing.assert_close(closest_to_median_mean(even, 2), torch.tensor([2.5]))


def test_bulyan_does_not_depend_on_the_order_of_clients() -> None:
    names = list(POINTS)
    expected = bulyan_over(names).result()
    shuffler = random.Random(0)
    for _ in range(40):
        order = names[:]
        shuffler.shuffle(order)
        rule = bulyan_over(order)
        assert sorted(order[i] for i in rule.chosen()) == ["A", "B", "C", "D", "E"]
        result = rule.result()
        for key, value in expected.items():
            assert torch.equal(result[key], value), (order, key)


def test_bulyan_with_no_assumed_liar_is_the_plain_mean() -> None:
    rule = bulyan_over(["A", "B", "C", "F"], assumed_malicious=0.2)  # f = floor(0.8) = 0
    torch.testing.assert_close(rule.result()["w"], torch.tensor([53.0 / 4]))


def test_bulyan_refuses_fewer_than_4f_plus_3_clients() -> None:
    rule = bulyan_over(["A", "B", "C", "D", "E"], assumed_malicious=0.2)  # f = 1 needs 7
    with pytest.raises(PayloadError, match=r"at least 4f \+ 3 = 7 clients .* got K = 5"):
        rule.result()


def test_bulyan_with_too_few_clients_per_round_is_refused_before_training() -> None:
    clients, tests = tiny_clients(per_client=24)  # K = 4; f = floor(0.25 x 4) = 1 needs 7
    config = RunConfig(rounds=1, algorithm="fedavg", aggregation="bulyan", assumed_malicious=0.25)
    with pytest.raises(ConfigError, match=r"4f \+ 3 = 7 clients .* K = 4. To fix: lower"):
        train_federated(clients, tests, TinyNet, config)


def test_a_trimmed_mean_that_would_drop_nobody_is_refused_before_training() -> None:
    clients, tests = tiny_clients(per_client=24)  # K = 4: floor(0.1 x 4) = 0 at each end
    config = RunConfig(rounds=1, algorithm="fedavg", aggregation="trimmed-mean")
    with pytest.raises(ConfigError, match=r"floor\(0.1 x 4\) = 0 .* at least 1/K = 0.25"):
        train_federated(clients, tests, TinyNet, config)
    assert trim_shortfall(4, 0.25) is None  # one value cut at each end
    assert trim_shortfall(4, 0.0) is None  # no trimming, asked for on purpose
    assert trim_shortfall(10, 0.1) is None and trim_shortfall(9, 0.1) is not None


def test_bulyan_selection_is_krum_when_one_state_is_chosen() -> None:
    # three states, f = 1: theta = 1, one Krum step with one neighbour
    distances = torch.tensor([[0.0, 1.0, 9.0], [1.0, 0.0, 4.0], [9.0, 4.0, 0.0]])
    assert bulyan_selection(distances, 1) == [1]  # 0 and 1 tie at 1; 1 is more central


# Norm clipping. g: w = [0, 0], running_var = [1], counter 5. Updates over the floating
# entries: a (3, 4 | 0) norm 5, b (0, 1 | 0) norm 1, c (0, 0 | 2) norm 2, d (30, 40 | 0) norm 50.
START = {
    "w": torch.zeros(2),
    "bn.running_var": torch.ones(1),
    "bn.num_batches_tracked": torch.tensor(5),
}
CLIPPED = {
    "a": ([3.0, 4.0], 1.0, 7),
    "b": ([0.0, 1.0], 1.0, 8),
    "c": ([0.0, 0.0], 3.0, 9),
    "d": ([30.0, 40.0], 1.0, 100),
}


def clip_state(name: str) -> dict[str, torch.Tensor]:
    w, var, count = CLIPPED[name]
    return {
        "w": torch.tensor(w),
        "bn.running_var": torch.tensor([var]),
        "bn.num_batches_tracked": torch.tensor(count),
    }


def clipped(names: Iterable[str], clip_norm: float) -> dict[str, torch.Tensor]:
    rule = NormClip(RoundReference(START), clip_norm)
    for name in names:
        rule.add(clip_state(name), 1000 if name == "d" else 1)  # claimed samples buy nothing
    return rule.result()


def test_norm_clip_with_a_fixed_bound_scales_only_the_long_updates() -> None:
    # M = 5: d is scaled by 5 / 50 = 0.1 to (3, 4 | 0); the mean of the clipped updates is
    # w (3 + 0 + 0 + 3, 4 + 1 + 0 + 4) / 4, running_var 1 + 2 / 4; counters (7+8+9+100)/4 = 31
    result = clipped("abcd", 5.0)
    torch.testing.assert_close(result["w"], torch.tensor([1.5, 2.25]))
    torch.testing.assert_close(result["bn.running_var"], torch.tensor([1.5]))
    assert result["bn.num_batches_tracked"].dtype == torch.int64  # counters: not clipped
    assert int(result["bn.num_batches_tracked"]) == 31


def test_norm_clip_by_default_clips_to_the_median_update_norm() -> None:
    # norms 5 1 2 50: median 3.5; a scaled by 0.7 to (2.1, 2.8), d by 0.07 to (2.1, 2.8)
    result = clipped("abcd", 0.0)
    torch.testing.assert_close(result["w"], torch.tensor([4.2 / 4, 6.6 / 4]))
    torch.testing.assert_close(result["bn.running_var"], torch.tensor([1.5]))


def test_norm_clip_does_not_depend_on_the_order_of_clients() -> None:
    expected = clipped("abcd", 0.0)
    for order in itertools.permutations("abcd"):
        result = clipped(order, 0.0)
        for key, value in expected.items():
            torch.testing.assert_close(result[key], value, atol=1e-6, rtol=0)


def test_norm_clip_gets_the_round_start_through_the_algorithm_interface() -> None:
    context = AlgorithmContext(4, 8, 1, weight_rule="norm-clip", clip_norm=5.0)
    updates = [ClientUpdate(name, 1, clip_state(name)) for name in "abcd"]
    for algorithm in ("fedavg", "fpl"):
        new = aggregate_all(build_algorithm(algorithm, {}, context), GlobalState(0, START), updates)
        torch.testing.assert_close(new.weights["w"], torch.tensor([1.5, 2.25]))
    with pytest.raises(PayloadError, match="norm-clip needs the weights the round started"):
        make_combiner("norm-clip")
    with pytest.raises(ConfigError, match="clip_norm must be >= 0"):
        RunConfig(aggregation="norm-clip", clip_norm=-1.0)


def resnet_clients(
    count: int,
) -> tuple[
    dict[str, torch.Tensor], dict[str, torch.Tensor], list[float], list[dict[str, torch.Tensor]]
]:
    """ResNet-10's global state g and ``count`` clients at g + t_i D for one random direction
    D over every floating entry (parameters and BatchNorm statistics), each client's
    counters different. Every rule maps such states to g + t D for one t: an entry written
    back at a shifted offset, or left out, breaks that."""
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in ResNet10(num_classes=10).state_dict().items()}
    direction = {k: torch.randn_like(v) * 1e-2 for k, v in start.items() if v.is_floating_point()}
    steps = [0.1, -0.2, 0.35, 0.5, 0.8, 1.1, 9.0][:count]
    states = []
    for index, t in enumerate(steps):
        state = {k: v + t * direction[k] if k in direction else v + index for k, v in start.items()}
        states.append(state)
    return start, direction, steps, states


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_is_exact_on_resnet10_whole_state(rule: str) -> None:
    start, direction, steps, states = resnet_clients(7)
    # FLTrust's server update points along D too
    root = {k: v + direction[k] if k in direction else v for k, v in start.items()}
    combiner = make_combiner(rule, 0.2, 0.2, reference=RoundReference(start, root))
    for index, state in enumerate(states):
        combiner.add(state, 10 + index)
    result = combiner.result()
    assert result.keys() == start.keys()
    along = []
    for key, value in result.items():
        assert value.shape == start[key].shape and value.dtype == start[key].dtype, key
        if key in direction:
            moved = (value - start[key]).double().flatten()
            d = direction[key].double().flatten()
            along.append(float(moved @ d / (d @ d)))
            # on the line through g along D: the residual is rounding only
            on_line = start[key] + along[-1] * direction[key]
            torch.testing.assert_close(value, on_line, atol=2e-6, rtol=0)
        else:  # integer counters stay integers, within the clients' range
            low, high = start[key] + 0, start[key] + len(states) - 1
            assert bool((value >= low).all() and (value <= high).all()), key
    assert max(along) - min(along) < 1e-4, rule  # one t for every entry
    assert min(steps) - 1e-6 <= along[0] <= max(steps) + 1e-6


@pytest.mark.parametrize("rule", ["bulyan", "norm-clip"])
def test_a_run_with_the_rule_trains(rule: str) -> None:
    # Bulyan needs 4f + 3 clients: the four tiny clients with f = floor(0.2 x 4) = 0 make it
    # the plain mean, so this checks only that the rule runs on a real model
    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32",
                       algorithm="fedavg", aggregation=rule)  # fmt: skip
    result = train_federated(clients, tests, TinyNet, config)
    assert len(result.history) == 2 and 0.0 <= result.summary["mean_accuracy"] <= 1.0


def test_a_weight_rule_the_algorithm_would_ignore_is_refused() -> None:
    with pytest.raises(ConfigError, match="fpl-fedheal combines the clients' weights by its own"):
        RunConfig(algorithm="fpl-fedheal", aggregation="krum")
    RunConfig(algorithm="fpl-fedheal", prototype_aggregation="centre-filter")  # this applies
