"""Malicious clients: the seeded draw, each attack's update against its formula, label flips
on the liars only, the settings' checks, and a run that records who lied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.config.robustness import ATTACK_NAMES
from protofl.core.payloads import ClientUpdate, Prototypes
from protofl.data.user import federation_from_arrays
from protofl.engine.attacks import (
    Attack,
    draw_malicious,
    flipped_labels,
    poisoned,
    sends_prototypes,
    shifted_prototypes,
)
from protofl.errors import ConfigError

from tiny_data import TinyNet, tiny_clients

IDS = [f"c{i}" for i in range(10)]


def test_the_draw_is_seeded_sized_and_named_clients_win() -> None:
    first = draw_malicious(IDS, 0.2, (), seed=3)
    assert len(first) == 2 and first <= set(IDS)
    assert draw_malicious(IDS, 0.2, (), seed=3) == first
    assert len(draw_malicious(IDS, 0.25, (), seed=3)) == 3  # round(2.5) half up
    assert draw_malicious(IDS, 0.2, ("c7",), seed=3) == {"c7"}
    with pytest.raises(ConfigError, match="c99 are not clients of this run"):
        draw_malicious(IDS, 0.0, ("c99",), seed=0)


def update_of(weights: dict[str, torch.Tensor]) -> ClientUpdate:
    return ClientUpdate("c0", 10, weights)


def test_sign_flip_sends_the_reversed_scaled_update_and_keeps_counters() -> None:
    received = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(4)}
    trained = {"w": torch.tensor([1.5, 1.0]), "n": torch.tensor(5)}
    sent = poisoned(
        update_of(trained), received, Attack("sign-flip", frozenset({"c0"}), 2.0), 0, 0, 1, 4
    )
    # g - s (w - g) = [1, 2] - 2 [0.5, -1] = [0, 4]
    assert torch.equal(sent.weights["w"], torch.tensor([0.0, 4.0]))
    assert torch.equal(sent.weights["n"], torch.tensor(5))  # integer counters as trained


def test_noise_sends_the_received_weights_plus_gaussian_noise_of_the_strength() -> None:
    received = {"w": torch.zeros(20000), "n": torch.tensor(4)}
    trained = {"w": torch.ones(20000), "n": torch.tensor(5)}
    attack = Attack("noise", frozenset({"c0"}), 0.5)
    sent = poisoned(update_of(trained), received, attack, 1, 0, 2, 4)
    assert sent.weights["w"].mean().abs() < 0.02 and abs(sent.weights["w"].std() - 0.5) < 0.01
    again = poisoned(update_of(trained), received, attack, 1, 0, 2, 4)
    assert torch.equal(sent.weights["w"], again.weights["w"])  # seeded per client and round
    label_flip = Attack("label-flip", frozenset({"c0"}))
    assert poisoned(update_of(trained), received, label_flip, 1, 0, 2, 4).weights is trained


def test_label_flip_maps_y_to_c_minus_1_minus_y_without_touching_the_others() -> None:
    clients, tests = tiny_clients(per_client=24)
    federation = federation_from_arrays(clients, tests, None, False)
    honest = federation.clients[0]
    liar = flipped_labels(honest, 4)
    assert torch.equal(liar.source.labels, 3 - honest.source.labels)
    assert liar.source.inputs is honest.source.inputs
    assert torch.equal(honest.source.labels, federation.clients[0].source.labels)


def test_pair_label_flip_maps_each_class_to_the_next() -> None:
    clients, tests = tiny_clients(per_client=24)
    federation = federation_from_arrays(clients, tests, None, False)
    honest = federation.clients[0]
    liar = flipped_labels(honest, 4, "label-flip-pair")
    by_hand = torch.tensor([{0: 1, 1: 2, 2: 3, 3: 0}[int(y)] for y in honest.source.labels])
    assert torch.equal(liar.source.labels, by_hand)
    assert liar.source.inputs is honest.source.inputs
    with pytest.raises(ValueError, match="not a label flip"):
        flipped_labels(honest, 4, "sign-flip")


def test_attack_settings_are_checked() -> None:
    from protofl.config import config_from_dict, parse_assignments

    for name in ATTACK_NAMES:  # as --set attack=NAME reads them
        assignments = parse_assignments([f"attack={name}", "malicious_fraction=0.25"])
        assert config_from_dict(assignments).attack == name
    with pytest.raises(ConfigError, match="attack"):
        RunConfig(attack="sign-flop", malicious_fraction=0.2)
    with pytest.raises(ConfigError, match="needs malicious_fraction > 0 or malicious_clients"):
        RunConfig(attack="noise")
    with pytest.raises(ConfigError, match="malicious clients are set but no attack"):
        RunConfig(malicious_fraction=0.2)
    with pytest.raises(ConfigError, match="attack_strength must be > 0"):
        RunConfig(attack="alie", malicious_fraction=0.2, attack_strength=-1.0)
    assert RunConfig(attack="alie", malicious_fraction=0.2).attack_strength is None
    for name in ("min-max", "min-sum", "label-flip"):
        with pytest.raises(ConfigError, match=f"attack='{name}' takes no attack_strength"):
            RunConfig(attack=name, malicious_fraction=0.2, attack_strength=2.0)


@pytest.mark.parametrize("attack", ATTACK_NAMES)
def test_a_run_with_an_attack_records_who_lied(attack: str, tmp_path: Path) -> None:
    clients, tests = tiny_clients(per_client=24)
    out = str(tmp_path / "run")
    config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32", seed=2,
                       attack=attack, malicious_fraction=0.25, out=out)  # fmt: skip
    result = train_federated(clients, tests, TinyNet, config, write=True)
    liars = result.resolved["malicious_clients"]
    assert len(liars) == 1 and liars[0] in result.history[0].clients
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["resolved"]["malicious_clients"] == liars
    if attack == "alie":  # one liar among 4: the paper's z is 0, the honest mean
        assert stored["resolved"]["alie_z"] == 0.0
    honest = RunConfig(**{**config.to_dict(), "attack": "", "malicious_fraction": 0.0, "out": None})
    clean = train_federated(clients, tests, TinyNet, honest)
    assert clean.history[-1].train != result.history[-1].train  # the lie changed the run


def test_prototype_poison_sends_each_prototype_under_the_next_class() -> None:
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    domains = torch.tensor([7, 7, 9])
    mine = Prototypes(vectors, torch.tensor([0, 2, 3]), torch.tensor([5, 6, 1]), domains)
    trained = {"w": torch.tensor([1.5]), "n": torch.tensor(5)}
    update = ClientUpdate("c0", 10, trained, mine)
    attack = Attack("prototype-poison", frozenset({"c0"}))
    sent = poisoned(update, {"w": torch.tensor([1.0])}, attack, 0, 0, 1, num_classes=4)
    assert sent.prototypes is not None
    assert sent.prototypes.labels.tolist() == [1, 3, 0]  # (y + 1) mod 4
    assert sent.prototypes.vectors is vectors  # real prototypes: norms pass any check
    assert sent.prototypes.support is mine.support and sent.prototypes.domains is domains
    assert sent.weights is trained  # the weights are sent honestly
    assert shifted_prototypes(mine, 4).labels.tolist() == [1, 3, 0]


# the algorithms whose clients upload prototypes (FedPLVM's come from its own finish)
SENDERS = {"fpl", "fpl-cpcl-only", "fpl-upcr-only", "fpl-global-consistency",
           "fpl-global-contrast", "fpl-fedheal", "fedproto", "fedproc", "fedplvm",
           "feddap"}  # fmt: skip


def test_sends_prototypes_asks_every_registered_algorithm() -> None:
    from protofl.algorithms import ALGORITHMS
    from protofl.builders import algorithm_for
    from protofl.engine.client import copy_state

    clients, tests = tiny_clients(per_client=8)
    client = federation_from_arrays(clients, tests, None, False).clients[0]
    example = client.transform.eval(client.source.inputs[client.indices[:2]])
    found = set()
    for name in ALGORITHMS.names():
        model = TinyNet()
        algorithm, _ = algorithm_for(RunConfig(algorithm=name), model, example, 4, 4)
        if sends_prototypes(algorithm, algorithm.init_state(copy_state(model)), model, client):
            found.add(name)
    assert found == SENDERS


def test_prototype_poison_is_refused_where_no_prototypes_are_sent() -> None:
    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=1, algorithm="fedavg", attack="prototype-poison",
                       malicious_fraction=0.25)  # fmt: skip
    with pytest.raises(ConfigError, match="'fedavg' sends only weights"):
        train_federated(clients, tests, TinyNet, config)


def test_flower_refuses_an_attack_and_says_why() -> None:
    from protofl.flower.settings import refuse_simulator_only

    with pytest.raises(
        ConfigError,
        match=r"attack is supported by the simulator .* node config instead",
    ):
        refuse_simulator_only(RunConfig(attack="alie", malicious_fraction=0.25))
