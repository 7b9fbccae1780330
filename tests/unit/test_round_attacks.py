"""Attacks crafted from the round's honest updates (alie, min-max, min-sum): each crafted
update against its formula on hand-made states, the liars alone changed, counters kept."""

from __future__ import annotations

import pytest
import torch

from protofl.core.payloads import ClientUpdate
from protofl.engine.round_attacks import alie_weights, alie_z, crafted_round


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
