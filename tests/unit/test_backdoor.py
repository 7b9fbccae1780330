"""The pixel-trigger backdoor: the trigger by hand, poisoned data on the liars only, the
attack success rate on a hand-made case, and a run that scores it every round."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from protofl import RunConfig, train_federated
from protofl.data.user import federation_from_arrays
from protofl.engine.backdoor import (
    attack_success_rate,
    backdoored,
    poisoned_choice,
    triggered_test_sets,
    with_trigger,
)
from protofl.engine.data import ClientData, TensorSet
from protofl.engine.data import TestSet as DomainTest
from protofl.engine.evaluate import evaluate
from protofl.errors import ConfigError

from tiny_data import TinyNet, tiny_clients


def test_the_trigger_is_a_white_corner_square_of_an_eighth_of_the_side() -> None:
    images = torch.full((2, 3, 32, 32), 7, dtype=torch.uint8)
    marked = with_trigger(images)
    assert torch.all(marked[..., 28:, 28:] == 255)  # 4 x 4 in every channel
    marked[..., 28:, 28:] = 7
    assert torch.equal(marked, images)  # nothing else changed
    assert torch.all(images == 7)  # a copy
    assert with_trigger(torch.zeros(1, 1, 5, 5, dtype=torch.uint8)).sum() == 255  # side >= 1


def test_only_the_liars_data_is_poisoned_by_the_chosen_share() -> None:
    clients, tests = tiny_clients(per_client=24)
    federation = federation_from_arrays(clients, tests, None, False)
    honest = federation.clients[1]
    before = honest.source.inputs.clone()
    liar = backdoored(honest, target=2, fraction=0.3, seed=5)
    chosen = poisoned_choice(24, 0.3, 5, honest.client_id)
    assert len(set(chosen.tolist())) == 7  # round(0.3 x 24), distinct
    others = torch.ones(24, dtype=torch.bool)
    others[chosen] = False
    mine = honest.source.inputs[honest.indices]
    labels = honest.source.labels[honest.indices]
    assert torch.equal(liar.source.inputs[chosen], with_trigger(mine[chosen]))
    assert torch.all(liar.source.labels[chosen] == 2)
    assert torch.equal(liar.source.inputs[others], mine[others])
    assert torch.equal(liar.source.labels[others], labels[others])
    assert torch.equal(honest.source.inputs, before)  # the shared data is not touched
    assert torch.equal(liar.indices, torch.arange(24))
    assert not torch.equal(poisoned_choice(24, 0.3, 5, "other"), chosen)  # per client


class Scaled:
    """A transform that only scales uint8 to [0, 1]."""

    def train(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.eval(batch)

    def eval(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.float() / 255


class CornerAndTopLeft(nn.Module):
    """Says class 0 exactly when the bottom-right and the top-left pixels are both white."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, -1, -1], x[:, 0, 0, 0]], dim=1)  # [B, 2]

    def head(self, z: torch.Tensor) -> torch.Tensor:
        target = 10 * z.sum(dim=1, keepdim=True) - 15  # > 0 only when both are 1
        return torch.cat([target, torch.zeros_like(target), torch.zeros_like(target)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_attack_success_rate_on_a_hand_made_case() -> None:
    def domain(name: str, labels: list[int], bright: list[bool]) -> DomainTest:
        images = torch.zeros(len(labels), 3, 8, 8, dtype=torch.uint8)
        images[torch.tensor(bright), :, 0, 0] = 255
        return DomainTest(name, TensorSet(images, torch.tensor(labels)), Scaled())

    # domain a: 6 images of other classes, 2 with a white top-left; 3 of the target class
    # (all bright, so counting them would change the answer); domain b: 4 of 4 bright
    a = domain("a", [1, 2, 1, 2, 1, 2, 0, 0, 0], [True, True] + [False] * 4 + [True] * 3)
    b = domain("b", [1, 1, 2, 2], [True] * 4)
    triggered = triggered_test_sets([a, b], target=0)
    assert [len(t.data) for t in triggered] == [6, 4]
    hits = evaluate(CornerAndTopLeft(), triggered, batch_size=4)
    assert hits == pytest.approx({"a": 2 / 6, "b": 1.0})
    assert attack_success_rate(hits, triggered) == pytest.approx(6 / 10)  # pooled, not 2/3
    untriggered = DomainTest("b", TensorSet(b.data.inputs, torch.zeros(4, dtype=torch.int64)),
                             Scaled())  # fmt: skip
    assert evaluate(CornerAndTopLeft(), [untriggered], batch_size=4)["b"] == 0.0  # it needs it


def test_a_backdoor_run_scores_its_success_every_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from protofl.sim import simulator

    stamped: list[str] = []

    def spy(client: ClientData, target: int, fraction: float, seed: int) -> ClientData:
        stamped.append(client.client_id)
        return backdoored(client, target, fraction, seed)

    monkeypatch.setattr(simulator, "backdoored", spy)
    clients, tests = tiny_clients(per_client=24)
    out = tmp_path / "run"
    board = importlib.util.find_spec("tensorboard") is not None  # optional: also its scalar
    config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32", seed=2,
                       attack="backdoor", malicious_fraction=0.25, backdoor_fraction=0.5,
                       out=str(out), tensorboard=board)  # fmt: skip
    result = train_federated(clients, tests, TinyNet, config, write=True)
    assert stamped == result.resolved["malicious_clients"]  # the liar alone, once
    rates = [r.attack_success_rate for r in result.history]
    assert all(rate is not None and 0 <= rate <= 1 for rate in rates)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["attack_success_rate"] for line in lines] == rates
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack_success_rate"] == rates[-1]
    scored = [rate for rate in rates if rate is not None]
    assert summary["last_5_rounds"]["attack_success_rate"] == pytest.approx(sum(scored) / 2)
    if board:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(next((out / "tensorboard").iterdir())))
        events.Reload()
        logged = [e.value for e in events.Scalars("attack/success_rate")]
        assert logged == pytest.approx(rates)
    clean = RunConfig(**{**config.to_dict(), "attack": "", "malicious_fraction": 0.0,
                         "backdoor_fraction": 0.3, "out": None})  # fmt: skip
    assert train_federated(clients, tests, TinyNet, clean).history[-1].attack_success_rate is None


def test_backdoor_settings_are_checked() -> None:
    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=1, attack="backdoor", malicious_fraction=0.25, backdoor_target=4)
    with pytest.raises(ConfigError, match=r"backdoor_target must be a class in \[0, 4\); got 4"):
        train_federated(clients, tests, TinyNet, config)
    with pytest.raises(ConfigError, match="backdoor_fraction must lie in"):
        RunConfig(attack="backdoor", malicious_fraction=0.25, backdoor_fraction=0.0)
    with pytest.raises(ConfigError, match="are options of attack='backdoor'"):
        RunConfig(attack="noise", malicious_fraction=0.25, backdoor_target=1)
