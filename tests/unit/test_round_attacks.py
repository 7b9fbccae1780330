"""Attacks crafted from the round's honest updates (alie, min-max, min-sum): each crafted
update against its formula on hand-made states, the liars alone changed, counters kept."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from protofl.core.payloads import ClientUpdate
from protofl.engine.round_attacks import (
    alie_weights,
    alie_z,
    benign_stack,
    crafted_round,
    distance_terms,
    largest_gamma,
    min_max_weights,
    min_sum_gamma,
)


def update(client: str, w: list[float], counter: int = 3) -> ClientUpdate:
    return ClientUpdate(client, 10, {"w": torch.tensor(w), "n": torch.tensor(counter)})


def test_alie_z_follows_the_papers_formula() -> None:
    # s = floor(n/2 + 1) - m; z = Phi^-1((n - s) / n), Phi^-1 from a normal table
    assert alie_z(50, 12) == pytest.approx(0.5828, abs=1e-4)  # s = 14, Phi^-1(0.72)
    assert alie_z(10, 2) == pytest.approx(0.2533, abs=1e-4)  # s = 4, Phi^-1(0.6)
    assert alie_z(20, 4) == pytest.approx(0.3853, abs=1e-4)  # s = 7, Phi^-1(0.65)
    assert alie_z(4, 1) == 0.0  # s = 2, Phi^-1(0.5): the honest mean
    assert alie_z(5, 4) == pytest.approx(0.8416, abs=1e-4)  # s kept at 1: Phi^-1(0.8)


def test_alie_sends_mean_minus_z_std_per_coordinate() -> None:
    benign = [update("a", [0.0, 2.0]).weights, update("b", [2.0, 2.0]).weights]
    benign.append(update("c", [4.0, 2.0]).weights)
    # mean [2, 2], sample std [2, 0]: 2 - 1.5 * 2 = -1
    crafted = alie_weights(benign, 1.5)
    assert torch.equal(crafted["w"], torch.tensor([-1.0, 2.0]))
    assert "n" not in crafted  # integer counters are not crafted


def test_only_the_liars_update_is_replaced_and_keeps_its_counter() -> None:
    updates = [update("a", [0.0]), update("liar", [9.0], 7), update("b", [2.0]), update("c", [4.0])]
    sent = crafted_round(updates, frozenset({"liar"}), "alie", 1.0)
    assert [u.client_id for u in sent] == ["a", "liar", "b", "c"]
    assert torch.equal(sent[1].weights["w"], torch.tensor([0.0]))  # 2 - 1 x 2
    assert torch.equal(sent[1].weights["n"], torch.tensor(7))  # as trained
    assert all(sent[i] is updates[i] for i in (0, 2, 3))  # the honest are untouched
    # default strength: the paper's z for 1 liar among 4 is 0, the honest mean
    assert torch.equal(crafted_round(updates, frozenset({"liar"}), "alie", None)[1].weights["w"],
                       torch.tensor([2.0]))  # fmt: skip


def test_a_round_of_liars_only_uses_their_own_trained_updates() -> None:
    updates = [update("x", [1.0]), update("y", [3.0])]
    sent = crafted_round(updates, frozenset({"x", "y"}), "alie", 1.0)
    expected = 2.0 - 2.0**0.5  # mean 2, sample std sqrt(2)
    assert all(torch.allclose(u.weights["w"], torch.tensor([expected])) for u in sent)


def test_min_max_and_min_sum_on_two_points_by_hand() -> None:
    # benign 0 and 2: mean 1, p = -std = -sqrt(2). min-max: max((1 - g sqrt2)^2,
    # (1 + g sqrt2)^2) <= 4 gives g = 1/sqrt2; min-sum: 2 + 4 g^2 <= 4 gives the same g.
    # Both put the lie at 1 - 1 = 0, on the benign update furthest along p.
    updates = [update("a", [0.0]), update("b", [2.0]), update("liar", [5.0], 9)]
    for name in ("min-max", "min-sum"):
        sent = crafted_round(updates, frozenset({"liar"}), name, None)[2]
        assert sent.weights["w"].item() == pytest.approx(0.0, abs=1e-4)
        assert sent.weights["n"].item() == 9


def test_largest_gamma_bisects_past_twice_its_start() -> None:
    assert largest_gamma(lambda g: g <= 57.3) == pytest.approx(57.3, abs=1e-5)
    assert largest_gamma(lambda g: g <= 0.001) == pytest.approx(0.001, abs=1e-5)
    assert largest_gamma(lambda g: g <= 0.0) == 0.0
    assert largest_gamma(lambda g: True) > 1e12  # no perturbation: any gamma passes


def random_states(count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "conv": torch.randn(2, 3, generator=generator) * (1 + i),
            "bias": torch.randn(4, generator=generator) + i,
            "n": torch.tensor(i),
        }
        for i in range(count)
    ]


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([state["conv"].flatten(), state["bias"]]).double()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_found_gamma_matches_a_brute_force_search(seed: int) -> None:
    benign = random_states(5, seed)
    points = torch.stack([flat(s) for s in benign])  # [5, 10]
    mean, p = points.mean(dim=0), -points.std(dim=0)  # the perturbation in float64
    pairwise = torch.cdist(points, points).pow(2)
    grid = torch.linspace(0, 20, 200_001, dtype=torch.float64)  # step 1e-4
    crafted = mean + grid[:, None] * p  # [G, 10]
    squared = torch.cdist(crafted, points).pow(2)  # [G, 5]
    for name, passes in (
        ("min-max", squared.max(dim=1).values <= pairwise.max()),
        ("min-sum", squared.sum(dim=1) <= pairwise.sum(dim=1).max()),
    ):
        brute = grid[passes].max().item()
        assert brute < 20  # the constraint binds inside the grid
        sent = min_max_weights(benign, name)
        found = (flat(sent | {"n": torch.tensor(0)}) - mean) / p  # gamma, per coordinate
        assert torch.allclose(found, found[0], atol=1e-4)
        assert found[0].item() == pytest.approx(brute, abs=2e-4), name


def test_min_sum_gamma_matches_its_closed_form() -> None:
    # sum_i |mean + g p - x_i|^2 = sum_i a_i + n g^2 |p|^2 (the cross terms cancel about the
    # mean), so g = sqrt((max_i sum_j D_ij - sum_i a_i) / (n |p|^2))
    benign = random_states(6, 7)
    points = torch.stack([flat(s) for s in benign])
    std = points.std(dim=0)
    limit = torch.cdist(points, points).pow(2).sum(dim=1).max()
    spread = (points - points.mean(dim=0)).pow(2).sum()
    expected = ((limit - spread) / (6 * std.pow(2).sum())).sqrt().item()
    a, b, c, pairwise = distance_terms(benign, {k: -benign_stack(benign, k).std(dim=0)
                                                for k in ("conv", "bias")})  # fmt: skip
    assert min_sum_gamma(a, b, c, pairwise) == pytest.approx(expected, abs=2e-5)


def test_unit_and_sign_perturbations_on_two_points_by_hand() -> None:
    # benign 0 and 2 from the starting weight 3: mean 1, mean update d = -2, so unit and sign
    # both give p = +1. min-max: max((1 + g)^2, (1 + g - 2)^2) <= 4 gives g = 1; min-sum:
    # (1 + g)^2 + (g - 1)^2 = 2 + 2 g^2 <= 4 gives g = 1: the lie lands at 2.
    start = {"w": torch.tensor([3.0]), "n": torch.tensor(0)}
    updates = [update("a", [0.0]), update("b", [2.0]), update("liar", [5.0], 9)]
    for name in ("min-max", "min-sum"):
        for kind in ("unit", "sign"):
            sent = crafted_round(updates, frozenset({"liar"}), name, None, kind, start)[2]
            assert sent.weights["w"].item() == pytest.approx(2.0, abs=1e-4), (name, kind)
            assert sent.weights["n"].item() == 9


@pytest.mark.parametrize("kind", ["unit", "sign"])
def test_unit_and_sign_directions_follow_their_formulas_against_brute_force(kind: str) -> None:
    benign = random_states(5, 3)
    start = {"conv": torch.full((2, 3), 0.5), "bias": torch.zeros(4), "n": torch.tensor(0)}
    points = torch.stack([flat(s) for s in benign])  # [5, 10]
    mean = points.mean(dim=0)
    drift = mean - flat(start)
    p = -drift / drift.norm() if kind == "unit" else -torch.sign(drift)
    pairwise = torch.cdist(points, points).pow(2)
    grid = torch.linspace(0, 40, 400_001, dtype=torch.float64)  # step 1e-4
    squared = torch.cdist(mean + grid[:, None] * p, points).pow(2)  # [G, 5]
    for name, passes in (
        ("min-max", squared.max(dim=1).values <= pairwise.max()),
        ("min-sum", squared.sum(dim=1) <= pairwise.sum(dim=1).max()),
    ):
        brute = grid[passes].max().item()
        assert brute < 40
        sent = min_max_weights(benign, name, kind, start)
        found = (flat(sent | {"n": torch.tensor(0)}) - mean) / p  # gamma, per coordinate
        assert torch.allclose(found, found[0], atol=1e-4)  # one gamma along p: the direction
        assert found[0].item() == pytest.approx(brute, abs=2e-4), name


def test_the_perturbation_is_an_option_of_min_max_and_min_sum_only() -> None:
    from protofl import RunConfig
    from protofl.errors import ConfigError

    liars: dict[str, Any] = {"malicious_fraction": 0.25}
    assert RunConfig(attack="min-sum", attack_perturbation="sign", **liars)
    with pytest.raises(ConfigError, match="attack_perturbation is an option of attack='min-max'"):
        RunConfig(attack="alie", attack_perturbation="unit", **liars)
    with pytest.raises(ConfigError, match="attack_perturbation"):
        RunConfig(attack="min-max", attack_perturbation="units", **liars)
