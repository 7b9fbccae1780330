"""The prototype defence (prototype_aggregation: median, centre-filter) against values worked
by hand; one poisoned prototype (another class's, under this class's label) no longer moves
the class's aggregate much; every prototype algorithm gets it, the others refuse it."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import ALGORITHMS, AlgorithmContext, build_algorithm
from protofl.algorithms.base import aggregate_all
from protofl.algorithms.prototypes import class_means
from protofl.algorithms.robust_prototypes import (
    PROTOTYPE_RULES,
    centre_filter_mask,
    class_centres,
    defend_prototypes,
    median_prototypes,
)
from protofl.config.robustness import PROTOTYPE_RULES as CONFIG_PROTOTYPE_RULES
from protofl.core.payloads import ClientUpdate, GlobalState, Prototypes
from protofl.errors import ConfigError

from tiny_data import TinyNet, tiny_clients

# class 0: a b c honest, p poisoned (class 1's prototype under label 0); class 1: d e f.
# Coordinate medians (the mean of the two middle values when even):
#   class 0: x of 0 .9 1 1.1 -> .95, y of 0 0 .1 1 -> .05, z of 0 0 0 .2 -> 0
#   class 1: x of 0 0 .1 -> 0, y of .9 1 1.1 -> 1, z 0          -> centres (.95,.05,0), (0,1,0)
# p = (0, 1, 0): cosine .05 / .9513 = .053 to its own centre, 1 to class 1's -> dropped;
# the honest rows' own-centre cosines are all >= .94 and their other-centre ones <= .11.
ROWS = {
    "a": ([1.0, 0.0, 0.0], 0),
    "b": ([0.9, 0.1, 0.0], 0),
    "c": ([1.1, 0.0, 0.2], 0),
    "p": ([0.0, 1.0, 0.0], 0),
    "d": ([0.0, 1.0, 0.0], 1),
    "e": ([0.1, 0.9, 0.0], 1),
    "f": ([0.0, 1.1, 0.0], 1),
}


def prototypes(names: str | tuple[str, ...], support: int = 10) -> Prototypes:
    vectors = torch.tensor([ROWS[n][0] for n in names])
    labels = torch.tensor([ROWS[n][1] for n in names])
    return Prototypes(vectors, labels, torch.full((len(names),), support))


def test_class_centres_are_coordinate_medians_worked_by_hand() -> None:
    centres, has = class_centres(prototypes("abcpdef"), 3)
    torch.testing.assert_close(centres[:2], torch.tensor([[0.95, 0.05, 0.0], [0.0, 1.0, 0.0]]))
    assert has.tolist() == [True, True, False]


def test_centre_filter_drops_the_other_class_prototype_and_keeps_the_rest() -> None:
    mask = centre_filter_mask(prototypes("abcpdef"), 3, min_cosine=0.0)
    assert mask.tolist() == [True, True, True, False, True, True, True]
    # a threshold drops the honest rows whose cosine to their centre is below it:
    # b's is (.855 + .005) / (.9055 x .9513) = .9983, c's (1.045) / (1.1180 x .9513) = .9826
    strict = centre_filter_mask(prototypes("abcdef"), 3, min_cosine=0.99)
    assert strict.tolist() == [True, True, False, True, True, True]


def test_median_is_one_prototype_per_class_or_per_class_and_domain() -> None:
    merged = median_prototypes(prototypes("abcpdef"))
    torch.testing.assert_close(merged.vectors, torch.tensor([[0.95, 0.05, 0.0], [0.0, 1.0, 0.0]]))
    assert merged.labels.tolist() == [0, 1] and merged.support.tolist() == [40, 30]
    tagged = prototypes("abcd")
    tagged = Prototypes(tagged.vectors, tagged.labels, tagged.support, torch.tensor([7, 7, 9, 9]))
    merged = median_prototypes(tagged)  # groups (0, 7): a b; (0, 9): c; (1, 9): d
    torch.testing.assert_close(merged.vectors[0], torch.tensor([0.95, 0.05, 0.0]))
    assert merged.labels.tolist() == [0, 0, 1] and merged.domains.tolist() == [7, 9, 9]  # type: ignore[union-attr]


@pytest.mark.parametrize("rule", ["median", "centre-filter"])
def test_one_poisoned_prototype_no_longer_moves_the_class_aggregate_much(rule: str) -> None:
    honest = class_means(prototypes("abcdef"), 2)[0][0]  # the plain mean, FPL's Eq. 3
    poisoned = class_means(prototypes("abcpdef"), 2)[0][0]
    defended = class_means(defend_prototypes(prototypes("abcpdef"), rule, 2), 2)[0][0]
    # undefended: (.75, .275, .05) against the honest (1, .033, .067), |(-.25, .242, -.017)| = .348
    assert float((poisoned - honest).norm()) > 0.34
    # centre-filter drops p exactly; the median moves by |(-.05, .017, -.067)| = .085
    assert float((defended - honest).norm()) < (0.09 if rule == "median" else 1e-6)


@pytest.mark.parametrize("rule", PROTOTYPE_RULES)
def test_the_defences_do_not_depend_on_the_order_of_clients(rule: str) -> None:
    expected = class_means(defend_prototypes(prototypes("abcpdef"), rule, 2), 2)[0]
    for order in itertools.permutations("abcpdef", 7):
        if order[0] not in "ap":  # 7! is large; every order starting with a or p is enough
            continue
        got = class_means(defend_prototypes(prototypes(order), rule, 2), 2)[0]
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def poisoned_updates(liar_sends_poison: bool = True) -> list[ClientUpdate]:
    """Three honest clients (a d, b e, c f) and a liar whose class-0 prototype is p."""
    weights = {"w": torch.zeros(1)}
    updates = [ClientUpdate(f"h{i}", 10, weights, prototypes(pair)) for i, pair in
               enumerate(("ad", "be", "cf"))]  # fmt: skip
    liar = prototypes("pf") if liar_sends_poison else prototypes("f")
    return [*updates, ClientUpdate("liar", 10, weights, liar)]


@pytest.mark.parametrize("name", ["fpl", "fedproto", "fedproc", "fedplvm", "fpl-fedheal"])
def test_every_prototype_algorithm_gets_the_filter_through_its_server_step(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """FPL's FINCH clusters and the global means see the survivors: the same server
    prototypes as if the liar had not sent its poisoned prototype."""
    start = GlobalState(0, {"w": torch.zeros(1)})
    defended_context = AlgorithmContext(2, 3, 1, prototype_aggregation="centre-filter")
    with caplog.at_level(logging.INFO, logger="protofl"):
        defended = aggregate_all(
            build_algorithm(name, {}, defended_context), start, poisoned_updates()
        )
    assert "centre-filter dropped 1 of 8 prototypes" in caplog.text
    clean_context = AlgorithmContext(2, 3, 1)
    clean = aggregate_all(build_algorithm(name, {}, clean_context), start, poisoned_updates(False))
    assert defended.prototypes is not None and clean.prototypes is not None
    torch.testing.assert_close(defended.prototypes.vectors, clean.prototypes.vectors)
    assert torch.equal(defended.prototypes.labels, clean.prototypes.labels)
    undefended = aggregate_all(build_algorithm(name, {}, clean_context), start, poisoned_updates())
    assert undefended.prototypes is not None
    dragged, clean_means = (
        class_means(undefended.prototypes, 2)[0],
        class_means(clean.prototypes, 2)[0],
    )
    assert not torch.allclose(dragged, clean_means)  # without the filter p does drag class 0


def test_names_and_refusals_are_checked_at_load() -> None:
    assert PROTOTYPE_RULES == CONFIG_PROTOTYPE_RULES
    senders = {n for n in ALGORITHMS.names() if ALGORITHMS.get(n).sends_prototypes}
    assert {"fpl", "fedproto", "fedproc", "fedplvm", "feddap", "fpl-fedheal"} <= senders
    assert not senders & {"fedavg", "fedprox", "moon", "feddyn", "fedopt", "fedbn", "fedheal"}
    with pytest.raises(ConfigError, match="fedavg uploads none; use it with one of fpl"):
        RunConfig(algorithm="fedavg", prototype_aggregation="median")
    with pytest.raises(ConfigError, match="Did you mean 'median'"):
        RunConfig(prototype_aggregation="medain")
    with pytest.raises(ConfigError, match=r"prototype_min_cosine must lie in \[-1, 1\]"):
        RunConfig(prototype_aggregation="centre-filter", prototype_min_cosine=2.0)


@pytest.mark.parametrize("rule", ["median", "centre-filter"])
def test_a_run_with_the_prototype_defence_trains(rule: str) -> None:
    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32",
                       algorithm="fpl", prototype_aggregation=rule)  # fmt: skip
    result = train_federated(clients, tests, TinyNet, config)
    assert len(result.history) == 2 and 0.0 <= result.summary["mean_accuracy"] <= 1.0
    assert result.state.prototypes is not None and len(result.state.prototypes)
