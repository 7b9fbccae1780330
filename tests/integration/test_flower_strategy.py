"""The Flower strategy and client app against fake and in-process Grids.

Covers: failing, silent and bad clients are dropped and logged; below ``min_clients`` the run
stops with a clear message instead of waiting; every registered algorithm gives the same
numbers through Flower's records as in the simulator; run-config round trips.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

flwr = pytest.importorskip("flwr", reason="Flower is optional: pip install protofl[flower]")

from flwr.app import Array, Context, Error, Message, RecordDict  # noqa: E402
from flwr.common.config import get_fused_config_from_dir, get_project_config  # noqa: E402

from protofl import RunConfig  # noqa: E402
from protofl.algorithms import ALGORITHMS  # noqa: E402
from protofl.builders import prepare  # noqa: E402
from protofl.core.payloads import ServerMessage  # noqa: E402
from protofl.core.records import RoundRecord  # noqa: E402
from protofl.errors import ConfigError, TrainingError  # noqa: E402
from protofl.flower.client import (  # noqa: E402
    PARTITION_ID,
    ClientSetup,
    client_app,
    train_round,
    validate_round,
)
from protofl.flower.codec import (  # noqa: E402
    CLIENT_STATE,
    decode_validation_counts,
    encode_server_message,
    encode_validation_counts,
)
from protofl.flower.project import write_app  # noqa: E402
from protofl.flower.server import (  # noqa: E402
    NODES,
    benchmark_server,
    decode_nodes,
    encode_nodes,
    run_server,
)
from protofl.flower.settings import (  # noqa: E402
    FlowerSettings,
    settings_from_run_config,
    to_run_config,
)
from protofl.flower.strategy import ProtoflStrategy  # noqa: E402
from protofl.outputs.checkpoint import load_snapshot  # noqa: E402

from flower_harness import (  # noqa: E402
    BENCHMARK_TINY,
    TINY,
    FakeGrid,
    InProcessGrid,
    Node,
    assert_close,
    flat,
    simulate,
    task_identity,  # noqa: F401  (autouse: Flower's Message needs a run id)
    tiny_client,
    tiny_grid,
    tiny_server,
    wire,
    without_timing,
)
from golden_runs import assert_matches_golden, golden_config  # noqa: E402
from tiny_data import tiny_clients  # noqa: E402


def trains(setup: ClientSetup, state: RecordDict | None = None) -> Node:
    node_state = RecordDict() if state is None else state

    def answer(message: Message) -> Message:
        content = train_round(setup, wire(message.content), node_state)
        return Message(wire(content), reply_to=message)

    return answer


def fails(message: Message) -> Message:
    return Message(Error(code=0, reason="ClientApp raised: out of memory"), reply_to=message)


def unreachable(message: Message) -> Message:
    """What the SuperLink answers for a node that stopped sending heartbeats: an error reply
    from the SuperLink's own node id."""
    reply = Message(Error(code=5, reason="Node Unavailable"), reply_to=message)
    reply.metadata.__dict__["_src_node_id"] = 1
    return reply


def silent(message: Message) -> None:
    return None  # killed, or slower than the round timeout


def sends_nan_weights(setup: ClientSetup) -> Node:
    honest = trains(setup)

    def answer(message: Message) -> Message:
        reply = honest(message)
        assert reply is not None  # the honest node always answers
        record = reply.content.array_records["weights"]
        key = next(k for k in record if record[k].dtype == "float32")
        record[key] = Array(np.full(record[key].shape, np.nan, dtype=np.float32))
        return reply

    return answer


def sends_nan_prototypes(setup: ClientSetup) -> Node:
    honest = trains(setup)

    def answer(message: Message) -> Message:
        reply = honest(message)
        assert reply is not None  # the honest node always answers
        record = reply.content.array_records["prototypes"]
        key = next(iter(record))
        record[key] = Array(np.full(record[key].shape, np.nan, dtype=np.float32))
        return reply

    return answer


# ---- failures ---------------------------------------------------------------------------------


def test_round_goes_on_without_failed_silent_and_bad_clients(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = FlowerSettings(min_clients=1, round_timeout=5.0)
    config = dataclasses.replace(TINY, rounds=1)
    grid = FakeGrid(
        {
            11: trains(tiny_client(0, config)),
            12: fails,
            13: silent,
            14: sends_nan_weights(tiny_client(3, config)),
            15: unreachable,
        }
    )
    with caplog.at_level(logging.WARNING, logger="protofl"):
        result = run_server(grid, tiny_server(config, settings), write=False)
    assert [r.round for r in result.history] == [1]
    assert list(result.history[0].clients) == ["red-0"]
    log = caplog.text
    assert "round 1, node 12: failed (error 0: ClientApp raised: out of memory)" in log
    assert "round 1, node 13: no reply within 5 s" in log
    assert "round 1, node 14: update rejected: node 14 (client 'green-3')" in log
    assert "non-finite" in log
    assert "round 1, node 15: failed (error 5: Node Unavailable)" in log  # not "node 1"
    assert sorted(result.history[0].rejected) == ["node 12", "node 13", "node 14", "node 15"]
    assert grid.timeouts == [5.0]  # never an unbounded wait


def test_bad_prototypes_are_dropped_but_the_weights_count_as_in_the_simulator(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = dataclasses.replace(TINY, rounds=1)
    grid = FakeGrid(
        {1: trains(tiny_client(0, config)), 2: sends_nan_prototypes(tiny_client(1, config))}
    )
    with caplog.at_level(logging.WARNING, logger="protofl"):
        result = run_server(grid, tiny_server(config), write=False)
    record = result.history[0]
    assert list(record.clients) == ["red-0", "red-1"]  # both updates were averaged
    assert list(record.rejected) == ["red-1"]
    assert record.rejected["red-1"].startswith("prototypes rejected:")
    assert "NaN or inf" in record.rejected["red-1"]


def test_below_min_clients_stops_with_a_clear_message() -> None:
    settings = FlowerSettings(min_clients=2, round_timeout=5.0)
    grid = FakeGrid({1: trains(tiny_client(0)), 2: fails})
    with pytest.raises(
        TrainingError, match=r"round 1: only 1 of 2 clients returned a valid update"
    ):
        run_server(grid, tiny_server(settings=settings), write=False)


def test_waits_for_nodes_with_a_deadline_then_stops() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    settings = FlowerSettings(min_clients=1, num_nodes=2, node_timeout=10.0)
    strategy = ProtoflStrategy(tiny_server(settings=settings), lambda: now[0], sleep)
    with pytest.raises(TrainingError, match=r"only 0 SuperNode\(s\) connected after 10 s"):
        strategy.wait_for_nodes(FakeGrid({}))
    assert now[0] == pytest.approx(10.0)


def test_waits_for_the_expected_nodes_then_goes_on_with_fewer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    grid = FakeGrid({})

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 3:
            grid.nodes[7] = silent

    settings = FlowerSettings(min_clients=1, num_nodes=2, node_timeout=10.0)
    strategy = ProtoflStrategy(tiny_server(settings=settings), lambda: now[0], sleep)
    with caplog.at_level(logging.WARNING, logger="protofl"):
        assert strategy.wait_for_nodes(grid) == [7]
    assert "1 of 2 expected SuperNodes connected" in caplog.text


def test_two_new_nodes_claiming_one_client_are_both_refused_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Which of two new nodes lies cannot be told from the payload: neither is counted."""
    config = dataclasses.replace(TINY, rounds=1)
    same = tiny_client(1, config)
    grid = FakeGrid({1: trains(tiny_client(0, config)), 2: trains(same), 3: trains(same)})
    with caplog.at_level(logging.WARNING, logger="protofl"):
        result = run_server(grid, tiny_server(config), write=False)
    assert list(result.history[0].clients) == ["red-0"]
    assert "node 2: claimed client index 1 together with node(s) 3" in caplog.text
    assert "node 3: claimed client index 1 together with node(s) 2" in caplog.text


def test_a_node_posing_as_another_client_is_refused_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Identity comes from the transport: node 9 joins in round 2 claiming client 1, which
    node 2 holds. Node 2 is still counted as red-1; node 9 is named as the newcomer. A node
    cannot switch to another client either."""
    config = dataclasses.replace(TINY, rounds=3)
    honest = {1: trains(tiny_client(0, config)), 2: trains(tiny_client(1, config))}
    grid = FakeGrid(dict(honest))
    strategy = ProtoflStrategy(tiny_server(config))

    def after_round(record: RoundRecord) -> None:
        if record.round == 1:
            grid.nodes[9] = trains(tiny_client(1, config))  # the liar claims client 1
        if record.round == 2:
            del grid.nodes[9]
            grid.nodes[1] = trains(tiny_client(1, config))  # node 1 now claims client 1 too

    with caplog.at_level(logging.WARNING, logger="protofl"):
        history = strategy.run(grid, after_round)
    assert [sorted(r.clients) for r in history] == [["red-0", "red-1"]] * 2 + [["red-1"]]
    assert "node 9: claimed client index 1, which node 2 holds; dropped (the newcomer)" in (
        caplog.text
    )
    assert "node 1: holds client index 0 but claimed client index 1; dropped" in caplog.text
    assert strategy.node_of == {0: 1, 1: 2}


def test_a_client_moves_to_a_new_node_when_its_node_is_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A restarted SuperNode gets a new node id: its client follows it once the old node
    is no longer connected."""
    config = dataclasses.replace(TINY, rounds=2)
    grid = FakeGrid({1: trains(tiny_client(0, config)), 2: trains(tiny_client(1, config))})
    strategy = ProtoflStrategy(tiny_server(config))

    def after_round(record: RoundRecord) -> None:
        if record.round == 1:
            grid.nodes[5] = grid.nodes.pop(2)

    with caplog.at_level(logging.WARNING, logger="protofl"):
        history = strategy.run(grid, after_round)
    assert sorted(history[1].clients) == ["red-0", "red-1"]
    assert strategy.node_of == {0: 1, 1: 5}
    assert "client index 1 moves from node 2 (no longer connected) to node 5" in caplog.text


def test_each_message_has_its_own_records_a_ttl_and_the_train_type() -> None:
    settings = FlowerSettings(round_timeout=7.0)
    strategy = ProtoflStrategy(tiny_server(settings=settings))
    messages = strategy.configure_train(FakeGrid({5: silent, 6: silent, 9: silent}))
    assert [m.metadata.dst_node_id for m in messages] == [5, 6, 9]
    assert len({id(m.content) for m in messages}) == 3
    assert len({id(m.content["weights"]) for m in messages}) == 3
    assert {m.metadata.message_type for m in messages} == {"train"}
    assert {m.metadata.ttl for m in messages} == {7.0}
    assert {m.metadata.group_id for m in messages} == {"1"}


# ---- same numbers as the simulator ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")  # the golden files were recorded on one thread
@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_every_algorithm_gives_the_simulators_and_the_recorded_numbers(algorithm: str) -> None:
    config = golden_config(algorithm)
    simulated = simulate(config)
    _, grid = tiny_grid(config)
    flower = run_server(grid, tiny_server(config), write=False)

    assert len(flower.history) == len(simulated.history) == config.rounds
    assert_matches_golden(algorithm, flower.history, record=False)
    assert all(r.personal_accuracy is None for r in flower.history)
    for got, want in zip(flower.history, simulated.history, strict=True):
        # Weights below are bit-identical; a reported loss term may differ in the last bit
        # where client state keeps the worker's channels-last strides in the simulator but
        # arrives contiguous from context.state (summed in another order).
        assert_close(flat(without_timing(got)), flat(without_timing(want)))
    state = flower.strategy.state
    for key, value in simulated.state.weights.items():
        assert torch.equal(state.weights[key], value), key
        assert state.weights[key].dtype == value.dtype, key
    assert state.tensors.keys() == simulated.state.tensors.keys()
    keeps_state = any(CLIENT_STATE in c.state for c in grid.contexts.values())
    sent = [m.content for batch in grid.sent for m in batch]
    assert not any(CLIENT_STATE in content for content in sent)  # it never leaves the node
    if algorithm == "moon":
        assert keeps_state


@pytest.mark.parametrize("validation", [0.0, 0.2])
def test_benchmark_apps_match_protofl_run_through_the_run_config(validation: float) -> None:
    config = dataclasses.replace(BENCHMARK_TINY, validation_fraction=validation)
    simulation, _ = prepare(config)
    expected = simulation.run(config.rounds)

    run_config = to_run_config(config, FlowerSettings(min_clients=2))
    server = benchmark_server(Context(0, 0, {}, RecordDict(), run_config))
    grid = InProcessGrid(client_app(), run_config, node_ids=[42, 17])
    flower = run_server(grid, server, write=False)
    assert [without_timing(r) for r in flower.history] == [without_timing(r) for r in expected]
    assert server.settings.min_clients == 2
    if validation:  # scored on the nodes' shares, added up on the server: the same numbers
        assert expected[-1].validation_accuracy is not None
        assert set(expected[-1].validation_accuracy) == {"handwritten", "synthetic"}


def test_a_held_out_domain_on_flower_is_scored_as_in_the_simulator() -> None:
    config = dataclasses.replace(
        BENCHMARK_TINY,
        domains=("handwritten", "synthetic", "segments"),
        clients_per_domain={"handwritten": 1, "synthetic": 1, "segments": 1},
        holdout_domains=("synthetic",),
    )
    simulation, resolved = prepare(config)
    expected = simulation.run(config.rounds)

    run_config = to_run_config(config, FlowerSettings(min_clients=2))
    server = benchmark_server(Context(0, 0, {}, RecordDict(), run_config))
    assert server.num_clients == 2 and server.resolved["holdout_sizes"] == resolved["holdout_sizes"]
    grid = InProcessGrid(client_app(), run_config, node_ids=[42, 17])  # partitions 0 and 1
    flower = run_server(grid, server, write=False)
    assert [without_timing(r) for r in flower.history] == [without_timing(r) for r in expected]
    assert list(flower.history[-1].clients) == ["handwritten-0", "segments-0"]
    assert flower.history[-1].holdout_accuracy is not None
    assert list(flower.history[-1].holdout_accuracy) == ["synthetic"]


# ---- validation split -------------------------------------------------------------------------


@pytest.mark.usefixtures("one_thread")
def test_validation_on_flower_adds_up_to_the_simulators_score() -> None:
    config = dataclasses.replace(TINY, validation_fraction=0.25)
    simulated = simulate(config)
    setups, grid = tiny_grid(config)
    flower = run_server(grid, tiny_server(config), write=False)

    want = [r.validation_accuracy for r in simulated.history]
    assert want[0] is not None and list(want[0]) == ["red", "green"]
    assert [r.validation_accuracy for r in flower.history] == want
    for got, expected in zip(flower.history, simulated.history, strict=True):
        assert_close(flat(without_timing(got)), flat(without_timing(expected)))
    for setup in setups.values():  # each node trains without its share and scores only it
        assert setup.validation is not None and len(setup.validation.data) > 0
        assert len(setup.data.indices) + len(setup.validation.data) == 48
    types = [m.metadata.message_type for batch in grid.sent for m in batch]
    assert types == (["train"] * 4 + ["evaluate"] * 4) * config.rounds


def answers(setup: ClientSetup, validation: Node | None = None) -> Node:
    """A node that trains, and answers evaluate messages with ``validation`` (default: its
    client's true counts)."""
    train = trains(setup)

    def answer(message: Message) -> Message | None:
        if message.metadata.message_type != "evaluate":
            return train(message)
        if validation is not None:
            return validation(message)
        return Message(wire(validate_round(setup, wire(message.content))), reply_to=message)

    return answer


def test_validation_counts_of_a_failing_or_posing_node_are_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = dataclasses.replace(TINY, rounds=1, validation_fraction=0.25)
    setups = [tiny_client(index, config) for index in range(4)]

    def poses_as_client_0(message: Message) -> Message:
        return Message(encode_validation_counts(0, "red", 12, 12), reply_to=message)

    grid = FakeGrid(
        {
            11: answers(setups[0]),
            12: answers(setups[1], fails),
            13: answers(setups[2], poses_as_client_0),
            14: answers(setups[3]),
        }
    )
    with caplog.at_level(logging.WARNING, logger="protofl"):
        result = run_server(grid, tiny_server(config), write=False)
    assert "round 1, node 12: no validation counts (ClientApp raised: out of memory)" in caplog.text
    assert "round 1, node 13: validation counts for client 0, which it does not hold" in caplog.text
    weights = encode_server_message(ServerMessage(1, result.strategy.state.weights))
    own = {i: decode_validation_counts(validate_round(setups[i], weights)) for i in (0, 3)}
    assert result.history[0].validation_accuracy == {  # each domain from its honest node alone
        "red": own[0][2] / own[0][3],
        "green": own[3][2] / own[3][3],
    }


# ---- run config -------------------------------------------------------------------------------


def test_run_config_round_trip() -> None:
    config = RunConfig(
        algorithm="fpl",
        rounds=3,
        domains=("handwritten", "strokes"),
        clients_per_domain={"handwritten": 3},
        algorithm_options={"fpl": {"temperature": 0.1}},
        client_fraction=0.25,
    )
    settings = FlowerSettings(min_clients=2, round_timeout=30.0)
    flat = to_run_config(config, settings)
    assert flat["data_dir"] == "" and flat["fpl.temperature"] == 0.1
    assert flat["flower.min_clients"] == 2
    back, back_settings = settings_from_run_config(flat)
    assert back == config
    assert back_settings == settings


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("flower.min_client", 2, "unknown flower setting 'min_client'. Did you mean 'min_clients'"),
        ("flower.min_clients", 1.5, "flower.min_clients: expected int"),
        ("flower.round_timeout", 0, "flower.round_timeout must be a positive number"),
        ("roundz", 2, "unknown setting 'roundz'. Did you mean 'rounds'"),
        ("fpl.temprature", 0.1, "unknown option of fpl 'temprature'"),
    ],
)
def test_bad_run_config_is_refused(key: str, value: Any, message: str) -> None:
    flat = {**to_run_config(RunConfig()), key: value}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_from_run_config(flat)


def test_written_app_is_a_valid_flower_app_and_overridable(tmp_path: Path) -> None:
    config = RunConfig(
        rounds=2, out="relative/out", algorithm_options={"fpl": {"cpcl_weight": 0.5}}
    )
    path = write_app(tmp_path / "app", config, FlowerSettings(num_nodes=2))
    project = get_project_config(path.parent)  # raises on an invalid pyproject
    components = project["tool"]["flwr"]["app"]["components"]
    assert components == {
        "serverapp": "protofl.flower.app:server",
        "clientapp": "protofl.flower.app:client",
    }
    fused = get_fused_config_from_dir(path.parent, {"rounds": 5, "fpl.temperature": 0.2})
    loaded, settings = settings_from_run_config(fused)
    assert loaded.rounds == 5 and settings.num_nodes == 2
    assert loaded.algorithm_options == {"fpl": {"cpcl_weight": 0.5, "temperature": 0.2}}
    assert loaded.out == str(Path("relative/out").resolve())  # apps run in other folders
    with pytest.raises(ConfigError, match="exists"):
        write_app(tmp_path / "app", config)


def test_the_app_folder_keeps_private_keys_out_of_git(tmp_path: Path) -> None:
    """docs/flower.md section 3 makes certs/ and keys/ in the app folder; `git add -A` there
    must not take them. A user's own .gitignore is left as it is."""
    import shutil
    import subprocess

    folder = write_app(tmp_path / "app", RunConfig(rounds=1)).parent
    for name in ("keys/node0", "keys/node0.pub", "certs/server.key", "certs/ca.crt"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("secret")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    listed = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"],
        cwd=folder, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert sorted(listed) == [".gitignore", "pyproject.toml"]
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / ".gitignore").write_text("mine\n")
    write_app(tmp_path / "own", RunConfig(rounds=1))
    assert (tmp_path / "own" / ".gitignore").read_text() == "mine\n"


class CrashingGrid(InProcessGrid):
    """The SuperLink going away in the middle of round ``crash_round``."""

    def __init__(self, *args: Any, crash_round: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crash_round, self.calls = crash_round, 0

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        self.calls += 1
        if self.calls == self.crash_round:
            raise ConnectionError("SuperLink unreachable")
        return super().send_and_receive(messages, timeout=timeout)


def test_a_crashed_server_resumes_from_its_checkpoint_with_the_same_metrics(
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(golden_config("fpl"), rounds=4)
    clients, _ = tiny_clients()
    setups = {index: tiny_client(index, config) for index in range(len(clients))}
    app = client_app(lambda context: setups[int(context.node_config[PARTITION_ID])])
    nodes = [907, 31, 555, 2]

    whole_config = dataclasses.replace(config, out=str(tmp_path / "whole"))
    whole = run_server(InProcessGrid(app, {}, node_ids=nodes), tiny_server(whole_config))

    cut_config = dataclasses.replace(config, out=str(tmp_path / "cut"))
    with pytest.raises(ConnectionError):
        run_server(CrashingGrid(app, {}, node_ids=nodes, crash_round=3), tiny_server(cut_config))
    # the checkpoint keeps which node holds which client, so a node that joins while the
    # server is down cannot take over a client whose node is still connected
    saved = load_snapshot(tmp_path / "cut", whole.strategy.state.weights, torch.device("cpu"))
    assert decode_nodes(saved.client_states[NODES]) == dict(enumerate(nodes))
    with pytest.raises(ConfigError, match=r"flower\.resume=true"):
        run_server(InProcessGrid(app, {}, node_ids=nodes), tiny_server(cut_config))
    resumed = run_server(
        InProcessGrid(app, {}, node_ids=nodes),
        tiny_server(cut_config, FlowerSettings(resume=True)),
    )
    assert [r.round for r in resumed.history] == [1, 2, 3, 4]
    for got, want in zip(resumed.history, whole.history, strict=True):
        assert_close(flat(without_timing(got)), flat(without_timing(want)))
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1, 2, 3, 4]


def test_node_ids_survive_the_checkpoint_encoding() -> None:
    bindings = {0: 2**64 - 1, 1: 0, 7: 2**63 + 12345, 3: 31}  # Flower's ids are unsigned 64-bit
    assert decode_nodes(encode_nodes(bindings)) == bindings


def test_client_sampling_draws_the_same_clients_and_numbers_as_the_simulator() -> None:
    config = dataclasses.replace(golden_config("fpl"), clients_per_round=0.5)
    simulated = simulate(config)
    setups, grid = tiny_grid(config)
    server = tiny_server(config)
    server = dataclasses.replace(server, num_clients=len(setups))
    flower = run_server(grid, server, write=False)
    for got, want in zip(flower.history, simulated.history, strict=True):
        assert set(got.clients) == set(want.clients) and len(got.clients) == 2
        assert not got.rejected  # undrawn clients answered "skipped", nobody is missing
        assert_close(flat(without_timing(got)), flat(without_timing(want)))
    assert len({frozenset(r.clients) for r in flower.history}) > 1


def test_each_node_loads_only_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client reads its own domain's file (and gets the simulator's samples, label skew
    included); the server reads every domain but keeps only the test splits."""
    from protofl.data import benchmarks
    from protofl.flower.client import client_from_config
    from protofl.flower.server import server_from_config

    spec = benchmarks.BENCHMARKS.get("embedded")
    loaded: list[str] = []
    original = spec.loader

    def recording(name: str, options: Any) -> Any:
        loaded.append(name)
        return original(name, options)

    monkeypatch.setitem(
        benchmarks.BENCHMARKS._entries, "embedded", dataclasses.replace(spec, loader=recording)
    )
    config = RunConfig(rounds=1, local_epochs=1, client_fraction=0.1, seed=4, label_skew=0.5)
    setup = client_from_config(config, 5)  # two clients per domain: the third domain's second
    assert loaded == ["strokes"] and setup.data.client_id == "strokes-1"
    reference, _ = prepare(config)
    assert torch.equal(setup.data.indices, reference.federation.clients[5].indices)
    loaded.clear()
    server = server_from_config(config)
    assert loaded == list(spec.domains) and server.num_clients == 8
    for got, want in zip(server.test_sets, reference.federation.test_sets, strict=True):
        assert torch.equal(got.data.inputs, want.data.inputs)


def test_a_client_that_stops_answering_is_named_absent_every_round(tmp_path: Path) -> None:
    settings = FlowerSettings(min_clients=1, round_timeout=5.0)
    config = dataclasses.replace(TINY, rounds=3, out=str(tmp_path / "run"))
    dying = trains(tiny_client(1, config))
    calls = {"count": 0}

    def dies_after_round_one(message: Message) -> Message | None:
        calls["count"] += 1
        return dying(message) if calls["count"] == 1 else None  # then silent: a dead node

    grid = FakeGrid({11: trains(tiny_client(0, config)), 12: dies_after_round_one})
    server = dataclasses.replace(tiny_server(config, settings), num_clients=2)
    result = run_server(grid, server)
    assert [r.absent for r in result.history] == [[], ["red-1"], ["red-1"]]
    # one name for one client: the refusal too names red-1, with its node in the reason
    assert [list(r.rejected) for r in result.history] == [[], ["red-1"], ["red-1"]]
    assert (
        result.history[1].rejected["red-1"] == "node 12: no reply within 5 s; going on without it"
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["absent_clients"] == {"red-1": [2, 3]}
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["absent"] == ["red-1"]


class RestartingNodesGrid(InProcessGrid):
    """Every SuperNode restarts (its ``context.state`` lost) before round ``restart_round``."""

    def __init__(self, *args: Any, restart_round: int, state_dir: Path | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.restart_round, self.calls = restart_round, 0
        for context in self.contexts.values():
            if state_dir is not None:
                context.node_config["state-dir"] = str(state_dir)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        self.calls += 1
        if self.calls == self.restart_round:
            for context in self.contexts.values():
                context.state = RecordDict()
        return super().send_and_receive(messages, timeout=timeout)


@pytest.mark.parametrize("with_state_dir", [True, False])
def test_client_state_survives_a_supernode_restart_through_its_state_dir(
    tmp_path: Path, with_state_dir: bool
) -> None:
    config = dataclasses.replace(golden_config("moon"), rounds=3)
    clients, _ = tiny_clients()
    nodes = [907, 31, 555, 2]

    def app() -> Any:
        setups = {index: tiny_client(index, config) for index in range(len(clients))}
        return client_app(lambda context: setups[int(context.node_config[PARTITION_ID])])

    steady = run_server(InProcessGrid(app(), {}, node_ids=nodes), tiny_server(config), write=False)
    state_dir = tmp_path / "node-state" if with_state_dir else None
    grid = RestartingNodesGrid(app(), {}, node_ids=nodes, restart_round=3, state_dir=state_dir)
    restarted = run_server(grid, tiny_server(config), write=False)
    same = [
        flat(without_timing(a)) == flat(without_timing(b))
        for a, b in zip(restarted.history, steady.history, strict=True)
    ]
    # MOON's round 3 contrasts with each client's previous model: kept on disk, the run is
    # unchanged; lost with the node's memory, round 3 differs
    assert same == ([True, True, True] if with_state_dir else [True, True, False])
    if with_state_dir:
        assert len(list((tmp_path / "node-state").glob("client-*-run-1.pt"))) == 4
