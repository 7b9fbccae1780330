"""A malicious Flower node (an ordinary ClientApp with the attack in its node config) lies
exactly as the simulator's liar: same records, same global weights; the omniscient attacks
(alie, min-max, min-sum) through the server-side emulation of their attacker."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("flwr", reason="Flower is optional: pip install protofl[flower]")

from protofl import RunConfig
from protofl.errors import ConfigError
from protofl.flower.client import PARTITION_ID, client_app
from protofl.flower.malicious import node_attack
from protofl.flower.server import run_server

from flower_harness import (
    BENCHMARK_TINY,
    InProcessGrid,
    assert_close,
    flat,
    simulate,
    task_identity,  # noqa: F401  (autouse: Flower's Message needs a run id)
    tiny_grid,
    tiny_server,
    without_timing,
)

CONFIG = RunConfig(rounds=2, local_epochs=1, batch_size=16, lr=0.05, seed=3)
NODE: dict[str, dict[str, Any]] = {
    "sign-flip": {"attack": "sign-flip", "attack-strength": 2.0},
    "noise": {"attack": "noise", "attack-strength": 0.1},
    "label-flip": {"attack": "label-flip"},
    "backdoor": {"attack": "backdoor", "backdoor-target": 1, "backdoor-fraction": 0.5},
    "prototype-poison": {"attack": "prototype-poison"},
    "alie": {"attack": "alie", "attack-strength": 1.5},
    "min-max": {"attack": "min-max"},
    "min-sum": {"attack": "min-sum"},
    "min-sum/sign": {"attack": "min-sum", "attack-perturbation": "sign"},
    "min-max/unit": {"attack": "min-max", "attack-perturbation": "unit"},
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("attack", sorted(NODE))
def test_a_malicious_node_lies_as_the_simulators_liar(attack: str) -> None:
    node = NODE[attack]
    options = {field: node[key] for key, field in (("attack-strength", "attack_strength"),
               ("backdoor-target", "backdoor_target"), ("backdoor-fraction", "backdoor_fraction"),
               ("attack-perturbation", "attack_perturbation")) if key in node}  # fmt: skip
    lying = dataclasses.replace(
        CONFIG, attack=node["attack"], malicious_clients=("red-1",), **options
    )
    simulated = simulate(lying)
    honest = simulate(CONFIG)
    _, grid = tiny_grid(CONFIG)
    grid.contexts[31].node_config.update(node)  # partition 1, red-1; the server is not told
    flower = run_server(grid, tiny_server(CONFIG), write=False)

    for got, want in zip(flower.history, simulated.history, strict=True):
        expected = without_timing(want)
        expected["attack_success_rate"] = None  # scored by the simulator only
        assert_close(flat(without_timing(got)), flat(expected))
    for key, value in simulated.state.weights.items():
        assert torch.equal(flower.strategy.state.weights[key], value), key
    assert any(
        not torch.equal(value, honest.state.weights[key])
        for key, value in simulated.state.weights.items()
    )  # the lie changed the run


@pytest.mark.usefixtures("one_thread")
def test_the_distance_screen_on_flower_leaves_out_the_simulators_liar() -> None:
    """FPL + FedHEAL behind the distance screen, one node sending noise: Flower's strategy
    leaves out the same update in every round and ends on the simulator's model."""
    config = dataclasses.replace(CONFIG, algorithm="fpl-fedheal", distance_screen=3.0)
    simulated = simulate(dataclasses.replace(config, attack="noise", malicious_clients=("red-1",)))
    _, grid = tiny_grid(config)
    grid.contexts[31].node_config.update({"attack": "noise"})  # partition 1, red-1
    flower = run_server(grid, tiny_server(config), write=False)

    for got, want in zip(flower.history, simulated.history, strict=True):
        assert list(got.rejected) == list(want.rejected) == ["red-1"]
        assert got.server_step is not None and got.server_step == want.server_step
        assert "red-1" not in got.server_step
    for key, value in simulated.state.weights.items():
        assert torch.equal(flower.strategy.state.weights[key], value), key


def test_a_node_config_attack_is_checked() -> None:
    assert node_attack({PARTITION_ID: 0}, "red-0") is None
    sign_flip = node_attack({"attack": "sign-flip", "attack-strength": 2.0}, "red-0")
    assert sign_flip is not None and sign_flip.malicious == {"red-0"}
    assert sign_flip.scale == 2.0
    alie = node_attack({"attack": "alie", "attack-strength": 1.5}, "red-0")
    assert alie is not None and (alie.name, alie.strength) == ("alie", 1.5)
    with pytest.raises(ConfigError, match=r"node config: .*attack"):
        node_attack({"attack": "sign-flop"}, "red-0")
    with pytest.raises(ConfigError, match="sets attack-strength but no attack"):
        node_attack({"attack-strength": 2.0}, "red-0")
    with pytest.raises(ConfigError, match="node config: backdoor_fraction"):
        node_attack({"attack": "backdoor", "backdoor-fraction": 2.0}, "red-0")


def test_the_documented_node_config_lines_parse_into_attacks() -> None:
    from flwr.common.config import parse_config_args

    line = "partition-id=1 attack='sign-flip' attack-strength=2.0"  # docs/attacks.md
    attack = node_attack(parse_config_args([line]), "red-1")
    assert attack is not None and (attack.name, attack.scale) == ("sign-flip", 2.0)
    line = "partition-id=3 attack='backdoor' backdoor-target=0 backdoor-fraction=0.3"
    attack = node_attack(parse_config_args([line]), "green-3")
    assert attack is not None and (attack.backdoor_target, attack.backdoor_fraction) == (0, 0.3)


@pytest.mark.slow
@pytest.mark.flower_e2e
def test_a_real_supernode_lies_from_its_node_config(tmp_path: Path) -> None:
    """Separate SuperLink and SuperNode processes: node 1 is started with the attack in its
    node config, the run config has none; the results are the simulator's with that liar."""
    from flower_processes import TINY, Deployment, finish, free_port, read_metrics, write_tiny_app

    out = tmp_path / "results"
    config = dataclasses.replace(TINY, out=str(out))
    app = write_tiny_app(
        tmp_path / "app", config, num_nodes=2, min_clients=2, node_timeout=60, round_timeout=120
    )
    deployment = Deployment(tmp_path / "flwr")
    try:
        deployment.start_superlink()
        deployment.start_supernode(0)
        link = f"127.0.0.1:{deployment.link_port}"
        deployment.start("node1", "flower-supernode", "--insecure", "--superlink", link,
                         "--port", str(free_port()), "--node-config",
                         "partition-id=1 attack='sign-flip' attack-strength=2.0")  # fmt: skip
        output = finish(deployment.run_app(app, timeout=240), 240, deployment)
    finally:
        deployment.stop()
    assert (out / "metrics.jsonl").exists(), output[-3000:] + deployment.log("node1")[-3000:]
    rounds = read_metrics(out)
    assert [r["round"] for r in rounds] == [1, 2], output[-4000:]
    saved = json.loads((out / "config.json").read_text())
    assert saved["attack"] == "" and "malicious_clients" not in saved["resolved"]  # not told

    from protofl.api import run

    lying = dataclasses.replace(config, out=None, attack="sign-flip", attack_strength=2.0,
                                malicious_clients=("synthetic-0",))  # fmt: skip
    threads = torch.get_num_threads()
    try:
        simulated = run(lying, write=False)
        honest = run(dataclasses.replace(config, out=None), write=False)
    finally:
        torch.set_num_threads(threads)
    for record, expected in zip(rounds, simulated.history, strict=True):
        assert record["per_domain_accuracy"] == expected.per_domain_accuracy
        assert record["train"] == pytest.approx(expected.train, rel=1e-6)
    assert [r.per_domain_accuracy for r in honest.history] != [
        r["per_domain_accuracy"] for r in rounds
    ]  # the lie changed the run


def test_the_omniscient_attack_tag_never_reaches_screening_or_the_defence() -> None:
    from flwr.app import ConfigRecord, RecordDict

    from protofl.engine.attacks import Attack
    from protofl.errors import PayloadError
    from protofl.flower.malicious import tag_round_attack, take_round_attack

    content = RecordDict({"meta": ConfigRecord({"round": 1})})
    tag_round_attack(content, Attack("alie", frozenset({"red-0"}), 1.5))
    assert take_round_attack(content) == ("alie", 1.5, "std")
    assert dict(content.config_records["meta"]) == {"round": 1}  # removed before decoding
    assert take_round_attack(content) is None
    tag_round_attack(content, Attack("sign-flip", frozenset({"red-0"}), 2.0))
    assert take_round_attack(content) is None  # only the omniscient attacks are tagged
    content.config_records["meta"]["round_attack"] = "steal"
    with pytest.raises(PayloadError, match="round_attack='steal'"):
        take_round_attack(content)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("attack", ["alie", "label-flip"])
def test_a_flower_simulation_with_an_attack_gives_the_simulators_run(attack: str) -> None:
    from flwr.app import Context, RecordDict

    from protofl.builders import prepare
    from protofl.engine.loading import client_ids
    from protofl.flower.server import benchmark_server
    from protofl.flower.settings import FlowerSettings, to_run_config
    from protofl.flower.simulation import honest, simulated_clients, simulated_liars

    config = dataclasses.replace(
        BENCHMARK_TINY,
        clients_per_domain={"handwritten": 2, "synthetic": 2},
        attack=attack,
        malicious_fraction=0.25,
        aggregation="median",
    )
    simulation, resolved = prepare(config)
    expected = simulation.run(config.rounds)
    assert len(resolved["malicious_clients"]) == 1  # 0.25 of 4 clients
    assert client_ids(config) == [c.client_id for c in simulation.federation.clients]
    assert simulated_liars(config) == set(resolved["malicious_clients"])

    run_config = to_run_config(honest(config), FlowerSettings(min_clients=4))
    server = benchmark_server(Context(0, 0, {}, RecordDict(), run_config))
    grid = InProcessGrid(client_app(simulated_clients(config)), {}, node_ids=[42, 17, 5, 99])
    flower = run_server(grid, server, write=False)
    for got, want in zip(flower.history, expected, strict=True):
        assert got.per_domain_accuracy == want.per_domain_accuracy
    for key, value in simulation.state.weights.items():
        assert torch.equal(flower.strategy.state.weights[key], value), key
