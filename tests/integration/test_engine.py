"""The local loop and the round loop: prototypes, hooks, determinism, FPL round 1 = FedAvg."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from protofl import RunConfig, train_federated
from protofl.algorithms.hooks import ClientResult, ClientRound, LocalStep
from protofl.core.payloads import Prototypes
from protofl.data.transforms import PassThrough
from protofl.data.user import ClientArrays
from protofl.engine.data import ClientData, TensorSet
from protofl.engine.local import LocalSettings, train_locally
from protofl.errors import TrainingError

from tiny_data import TinyNet, tiny_clients


class IdentityFeatures(nn.Module):
    """features(x) = x, so local prototypes must equal the class means of the inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(3, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)


class Collecting(ClientRound):
    collect_prototypes = True


def flat_client(count: int = 10) -> ClientData:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(count, 3, generator=generator)
    labels = torch.tensor([0, 1] * (count // 2))
    return ClientData("c", "d", TensorSet(inputs, labels), torch.arange(count), PassThrough())


def test_prototypes_are_class_means_over_the_last_epoch_only() -> None:
    client = flat_client()
    settings = LocalSettings(epochs=3, batch_size=4)
    outcome = train_locally(
        IdentityFeatures(), client, Collecting(), settings, torch.Generator().manual_seed(1)
    )
    assert outcome.steps == 9  # 3 epochs x ceil(10 / 4), the last batch kept
    assert outcome.prototypes is not None
    inputs, labels = client.source.inputs, client.source.labels
    for cls in (0, 1):
        row = outcome.prototypes.labels.tolist().index(cls)
        torch.testing.assert_close(outcome.prototypes.vectors[row], inputs[labels == cls].mean(0))
        assert outcome.prototypes.support[row].item() == 5  # not 15: only the last epoch


def test_hook_terms_are_added_to_the_loss_and_reported() -> None:
    class Penalty(ClientRound):
        def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
            return {"penalty": step.features.pow(2).mean() * 0 + 3.0}

    outcome = train_locally(
        IdentityFeatures(), flat_client(), Penalty(), LocalSettings(), torch.Generator()
    )
    assert outcome.metrics["penalty"] == pytest.approx(3.0)
    assert outcome.metrics["loss"] == pytest.approx(outcome.metrics["ce"] + 3.0, rel=1e-5)
    assert outcome.prototypes is None


def test_nan_loss_stops_with_the_term_named() -> None:
    class Broken(ClientRound):
        def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
            return {"upcr": step.features.sum() * float("nan")}

    with pytest.raises(TrainingError, match=r"round 4, client c.*upcr"):
        train_locally(
            IdentityFeatures(),
            flat_client(),
            Broken(),
            LocalSettings(),
            torch.Generator(),
            where="round 4, client c",
        )


def run_tiny(algorithm: str, seed: int = 0, rounds: int = 2) -> object:
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    config = RunConfig(
        algorithm=algorithm, rounds=rounds, local_epochs=1, batch_size=16, seed=seed, lr=0.05
    )
    return train_federated(clients, tests, TinyNet(), config)


def test_same_seed_same_results_other_seed_different() -> None:
    first, again, other = run_tiny("fpl"), run_tiny("fpl"), run_tiny("fpl", seed=1)
    assert [r.train for r in first.history] == [r.train for r in again.history]  # type: ignore[attr-defined]
    for key, value in first.state.weights.items():  # type: ignore[attr-defined]
        assert torch.equal(value, again.state.weights[key])  # type: ignore[attr-defined]
    assert first.history[-1].train != other.history[-1].train  # type: ignore[attr-defined]


def test_fpl_round_one_is_fedavg() -> None:
    fpl, fedavg = run_tiny("fpl", rounds=1), run_tiny("fedavg", rounds=1)
    for key, value in fpl.state.weights.items():  # type: ignore[attr-defined]
        assert torch.equal(value, fedavg.state.weights[key])  # type: ignore[attr-defined]
    assert fpl.history[0].train["cpcl"] == 0.0  # type: ignore[attr-defined]


def test_fpl_sends_cluster_prototypes_and_uses_them() -> None:
    result = run_tiny("fpl", rounds=2)
    state = result.state  # type: ignore[attr-defined]
    assert isinstance(state.prototypes, Prototypes)
    assert set(state.prototypes.labels.tolist()) == {0, 1, 2, 3}
    assert result.history[1].train["cpcl"] > 0  # type: ignore[attr-defined]
    assert result.history[1].train["upcr"] > 0  # type: ignore[attr-defined]


def test_client_state_round_trip() -> None:
    """An algorithm's client-only state comes back to the same client next round."""
    from protofl.algorithms.base import Algorithm, AlgorithmContext
    from protofl.data.user import federation_from_arrays
    from protofl.sim.simulator import Simulation

    seen: list[dict[str, torch.Tensor]] = []

    class Counting(ClientRound):
        def __init__(self, state: dict[str, torch.Tensor]) -> None:
            seen.append(state)
            self.count = state.get("count", torch.zeros((), dtype=torch.int64))

        def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
            return ClientResult(state={"count": self.count + 1})

    class CountingAlgorithm(Algorithm):
        name = "counting"

        def start_client(self, start):  # type: ignore[no-untyped-def]
            return Counting(start.state)

    clients, tests = tiny_clients()
    federation = federation_from_arrays(clients, tests)
    algorithm = CountingAlgorithm(None, AlgorithmContext(4, 8, 3))
    simulation = Simulation.start(algorithm, TinyNet(), federation, LocalSettings())
    simulation.run(3)
    assert {int(s["count"]) for s in simulation.client_states.values()} == {3}
    assert [int(s.get("count", -1)) for s in seen[-4:]] == [2, 2, 2, 2]


def test_a_trailing_single_sample_joins_the_previous_batch() -> None:
    """65 samples at batch 64 would leave a batch of one, which BatchNorm cannot train on."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(65, 3, 4, 4, generator=generator)
    labels = torch.arange(65) % 4
    client = ClientData("c", "d", TensorSet(inputs, labels), torch.arange(65), PassThrough())
    outcome = train_locally(
        TinyNet(), client, Collecting(), LocalSettings(epochs=2), torch.Generator()
    )
    assert outcome.steps == 2  # one batch of 65 per epoch, no sample dropped
    assert outcome.prototypes is not None
    assert int(outcome.prototypes.support.sum()) == 65


def test_a_one_sample_client_with_batch_norm_is_explained() -> None:
    client = ClientData(
        "tiny",
        "d",
        TensorSet(torch.randn(1, 3, 4, 4), torch.tensor([0])),
        torch.arange(1),
        PassThrough(),
    )
    with pytest.raises(TrainingError, match=r"client tiny holds 1 sample.*BatchNorm"):
        train_locally(TinyNet(), client, ClientRound(), LocalSettings(), torch.Generator())


def test_compiled_forward_gives_the_same_run() -> None:
    """torch.compile is wired into the local loop; the "eager" backend checks the plumbing
    without paying for code generation (inductor is for GPUs, minutes on this CPU)."""
    clients, tests = tiny_clients()
    results = []
    for backend in ("", "eager"):
        torch.manual_seed(0)
        config = RunConfig(rounds=1, local_epochs=1, batch_size=16, precision="fp32",
                           compile=backend)  # fmt: skip
        results.append(train_federated(clients, tests, TinyNet(), config))
    plain, compiled = results
    assert plain.history[0].train == compiled.history[0].train
    for key, value in plain.state.weights.items():
        assert torch.equal(value, compiled.state.weights[key])


def test_labels_beyond_the_head_are_named_as_a_data_problem() -> None:
    from protofl.data import ClientArrays
    from protofl.errors import DataError

    clients, tests = tiny_clients()
    labels = clients[1].y.copy()
    labels[0] = 7
    clients[1] = ClientArrays(clients[1].x, labels, clients[1].domain)
    with pytest.raises(
        DataError, match=r"labels 4\.\.7 occur in client red-1, but the model.s head has 4"
    ):
        train_federated(clients, tests, TinyNet(), RunConfig(rounds=1, local_epochs=1))


class ThreadProbe:
    """Observer that notes torch's thread count while each client trains."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def round_started(self, round_index: int, rounds: int) -> None: ...

    def client_finished(self, round_index: int, client_id: str) -> None:
        self.seen.add(torch.get_num_threads())

    def round_finished(self, record: object) -> None: ...


def test_a_run_uses_its_thread_setting_and_gives_the_callers_back() -> None:
    from protofl import run

    clients, tests = tiny_clients()
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    config = RunConfig(rounds=1, local_epochs=1, batch_size=16, threads=wanted)
    for train in (
        lambda probe: train_federated(clients, tests, TinyNet(), config, observer=probe),
        lambda probe: run(config, probe, write=False),
    ):
        probe = ThreadProbe()
        train(probe)
        assert probe.seen == {wanted}
        assert torch.get_num_threads() == before


def test_config_json_records_each_clients_domain_whatever_its_name(tmp_path: Path) -> None:
    """Tables that sum by domain (the robustness grid's weight shares) read this record,
    not the client's name: a caller's ids need not say the domain."""
    clients, tests = tiny_clients(per_client=8)
    named = [ClientArrays(c.x, c.y, c.domain, f"site{k}") for k, c in enumerate(clients)]
    config = RunConfig(rounds=1, local_epochs=1, out=str(tmp_path / "run"), seed=0)
    train_federated(named, tests, TinyNet, config, write=True)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["client_domains"] == {
        "site0": "red", "site1": "red", "site2": "green", "site3": "green"
    }  # fmt: skip
