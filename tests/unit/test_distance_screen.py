"""The distance screen (``distance_screen``): which updates it leaves out on constructed
distances, that it holds nothing else back, and that it stands in front of FedHEAL, whose own
weight rule hands random-noise liars most of the weight."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.core.payloads import ClientUpdate
from protofl.errors import ConfigError
from protofl.federation.screening import distance_screen

from tiny_data import TinyNet, tiny_clients

GLOBAL = {"w": torch.zeros(2), "count": torch.tensor(5)}


def update(name: str, x: float, y: float, count: int = 5) -> ClientUpdate:
    weights = {"w": torch.tensor([float(x), float(y)]), "count": torch.tensor(count)}
    return ClientUpdate(client_id=name, weights=weights, num_samples=10)


def test_the_distance_counts_floating_entries_only() -> None:
    # a's counter is a million off the global one; its distance is still |(3, 4)| = 5
    updates = [update("a", 3, 4, count=10**6), update("b", 0.1, 0), update("c", 0.1, 0)]
    assert (
        "distance from the global model, 5, is over" in distance_screen(updates, GLOBAL, 3)[1]["a"]
    )


def test_updates_beyond_the_factor_times_the_median_distance_are_left_out() -> None:
    # distances 1, 2, 3, 4, 50: median 3, bound 3 x 3 = 9 -> e (50) out, d (4) in
    updates = [update("a", 1, 0), update("e", 30, 40), update("b", 0, 2), update("c", 3, 0),
               update("d", 0, -4)]  # fmt: skip
    kept, dropped = distance_screen(updates, GLOBAL, 3.0)
    assert [u.client_id for u in kept] == ["a", "b", "c", "d"]  # order kept
    assert list(dropped) == ["e"]
    assert "model, 50, is over" in dropped["e"] and "median 3" in dropped["e"]
    # factor 1: only what is beyond the median itself goes (d, e)
    assert set(distance_screen(updates, GLOBAL, 1.0)[1]) == {"d", "e"}


def test_an_even_round_takes_the_mean_of_the_two_middle_distances() -> None:
    updates = [update("a", 1, 0), update("b", 3, 0), update("c", 0, 10.1), update("d", 0, 9.9)]
    # distances 1, 3, 9.9, 10.1: median (3 + 9.9) / 2 = 6.45; factor 1.5 -> bound 9.675
    assert set(distance_screen(updates, GLOBAL, 1.5)[1]) == {"c", "d"}


def test_a_setting_below_one_is_refused() -> None:
    for bad in (0.5, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="distance_screen"):
            RunConfig(distance_screen=bad)
    assert RunConfig(distance_screen=3).distance_screen == 3.0


def run(**settings: object) -> object:
    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32", seed=3,
                       algorithm="fpl-fedheal", attack="noise", malicious_clients=("red-1",),
                       **settings)  # type: ignore[arg-type]  # fmt: skip
    return train_federated(clients, tests, TinyNet, config)


def test_it_keeps_noise_liars_away_from_fedheal_and_nothing_else() -> None:
    open_door, screened = run(), run(distance_screen=3)
    for record in open_door.history:  # type: ignore[attr-defined]
        assert not record.rejected
        weights = {client: step["weight"] for client, step in record.server_step.items()}
        assert max(weights, key=weights.__getitem__) == "red-1"  # FedHEAL favours the far one
        assert weights["red-1"] > 1 / len(weights)
    for record in screened.history:  # type: ignore[attr-defined]
        assert list(record.rejected) == ["red-1"]
        assert "distance_screen 3 x" in record.rejected["red-1"]
        assert "red-1" not in record.server_step and "red-1" not in record.clients


def test_off_it_changes_nothing() -> None:
    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32", seed=1)
    plain = train_federated(clients, tests, TinyNet, config)
    # a screen so wide it drops nobody holds the round but must give the same model
    wide = train_federated(clients, tests, TinyNet, dataclasses.replace(config,
                           distance_screen=1e9))  # fmt: skip
    for key, value in plain.state.weights.items():
        assert torch.equal(value, wide.state.weights[key]), key
