"""The server's screening of client updates: bad weights out, bad prototypes dropped."""

from __future__ import annotations

import pytest
import torch

from protofl.core.payloads import ClientUpdate, Prototypes
from protofl.errors import TrainingError
from protofl.federation.screening import screen_updates

REFERENCE = {"w": torch.zeros(2, 3), "n": torch.zeros((), dtype=torch.int64)}


def update(client: str, weights: dict[str, torch.Tensor] | None = None,
           prototypes: Prototypes | None = None) -> ClientUpdate:  # fmt: skip
    return ClientUpdate(client, 10, weights or {k: v.clone() for k, v in REFERENCE.items()},
                        prototypes)  # fmt: skip


def prototypes(vectors: torch.Tensor, labels: list[int]) -> Prototypes:
    return Prototypes(vectors, torch.tensor(labels), torch.ones(len(labels), dtype=torch.int64))


def test_good_updates_pass_untouched() -> None:
    good = update("a", prototypes=prototypes(torch.ones(2, 4), [0, 1]))
    kept, rejected = screen_updates([good], REFERENCE, 3, 4, 1)
    assert kept == [good] and rejected == {}


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        ({"w": torch.zeros(2, 3)}, "missing ['n']"),
        ({"w": torch.zeros(3, 2), "n": torch.zeros((), dtype=torch.int64)}, "expected"),
        ({"w": torch.full((2, 3), float("nan")), "n": torch.zeros((), dtype=torch.int64)}, "NaN"),
        ({"w": torch.zeros(2, 3), "n": torch.zeros(())}, "torch.float32 ()"),
    ],
)
def test_bad_weights_leave_the_client_out(weights: dict[str, torch.Tensor], reason: str) -> None:
    kept, rejected = screen_updates([update("bad", weights), update("ok")], REFERENCE, 3, 4, 7)
    assert [u.client_id for u in kept] == ["ok"]
    assert "update rejected" in rejected["bad"] and reason in rejected["bad"]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (prototypes(torch.full((1, 4), float("nan")), [0]), "NaN or inf"),
        (prototypes(torch.ones(1, 5), [0]), "[P, 4]"),
        (prototypes(torch.ones(1, 4), [9]), "[0, 3)"),
    ],
)
def test_bad_prototypes_are_dropped_but_weights_kept(
    bad: Prototypes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    kept, rejected = screen_updates([update("c", prototypes=bad)], REFERENCE, 3, 4, 2)
    assert len(kept) == 1 and kept[0].prototypes is None
    assert "prototypes rejected" in rejected["c"] and reason in rejected["c"]
    assert "round 2, client c: prototypes rejected" in caplog.text


def test_nothing_left_stops_the_run_with_the_reasons() -> None:
    nan = {"w": torch.full((2, 3), float("nan")), "n": torch.zeros((), dtype=torch.int64)}
    with pytest.raises(TrainingError, match=r"round 5: every client's update was rejected"):
        screen_updates([update("x", nan)], REFERENCE, 3, 4, 5)


def test_a_round_goes_on_without_a_client_sending_nan_prototypes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from protofl import RunConfig, train_federated
    from protofl.algorithms.fpl import FPLClientRound
    from protofl.algorithms.hooks import ClientResult

    from tiny_data import TinyNet, tiny_clients

    original = FPLClientRound.finish
    calls = []

    def first_client_sends_nan(self, model, local):  # type: ignore[no-untyped-def]
        result: ClientResult = original(self, model, local)
        calls.append(1)
        if len(calls) == 1 and local is not None:
            bad = Prototypes(local.vectors * float("nan"), local.labels, local.support)
            return ClientResult(prototypes=bad, state=result.state)
        return result

    monkeypatch.setattr(FPLClientRound, "finish", first_client_sends_nan)
    clients, tests = tiny_clients()
    config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32")
    result = train_federated(clients, tests, TinyNet(), config)
    first = result.history[0]
    assert list(first.rejected) == ["red-0"] and "NaN" in first.rejected["red-0"]
    assert first.num_prototypes > 0  # the other clients' prototypes were clustered
    assert result.history[1].rejected == {}
