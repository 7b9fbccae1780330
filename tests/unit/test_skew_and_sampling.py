"""Label skew inside domains (Dirichlet) and per-round client sampling: the partition and
sampling properties, and that both run end to end and resume exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protofl import RunConfig
from protofl.api import resume, run
from protofl.data.partition import draw_clients
from protofl.errors import ConfigError
from protofl.federation.participation import sample_clients

LABELS = {"a": torch.arange(400) % 10, "b": torch.arange(300) % 10}


@settings(max_examples=25, deadline=None)
@given(
    alpha=st.floats(0.05, 100.0),
    counts=st.tuples(st.integers(1, 5), st.integers(0, 4)),
    seed=st.integers(0, 2**31),
)
def test_skewed_clients_are_disjoint_sized_as_the_plain_split_and_seeded(
    alpha: float, counts: tuple[int, int], seed: int
) -> None:
    allocation = {"a": counts[0], "b": counts[1]}
    try:
        plans = draw_clients(LABELS, allocation, 0.05, seed, 10, label_skew=alpha)
    except ConfigError as err:  # very small alpha: a client may be left with < 2 samples
        assert "fewer than 2 samples" in str(err)
        return
    again = draw_clients(LABELS, allocation, 0.05, seed, 10, label_skew=alpha)
    for domain, count in allocation.items():
        mine = [p for p in plans if p.domain == domain]
        assert len(mine) == count
        taken = np.concatenate([p.indices for p in mine]) if mine else np.zeros(0)
        assert len(np.unique(taken)) == len(taken)  # no sample twice
        assert len(taken) == count * max(1, int(0.05 * len(LABELS[domain])))
        assert all(len(p.indices) >= 2 for p in mine)
    assert all(np.array_equal(p.indices, q.indices) for p, q in zip(plans, again, strict=True))


def test_small_alpha_concentrates_classes_and_large_alpha_spreads_them() -> None:
    def classes_per_client(alpha: float) -> float:
        plans = draw_clients({"a": torch.arange(2000) % 10}, {"a": 5}, 0.2, 3, 10, label_skew=alpha)
        labels = (torch.arange(2000) % 10).numpy()
        return float(np.mean([len(np.unique(labels[p.indices])) for p in plans]))

    assert classes_per_client(0.1) < 8 < classes_per_client(1.0)
    assert classes_per_client(100.0) == 10


def test_sampling_is_seeded_per_round_and_sized_as_asked() -> None:
    assert sample_clients(10, 1.0, 0, 3) == list(range(10))
    picked = sample_clients(10, 0.3, 0, 3)
    assert len(picked) == 3 and picked == sorted(set(picked))
    assert sample_clients(10, 0.3, 0, 3) == picked  # same seed and round: same clients
    assert len(sample_clients(10, 4, 0, 3)) == 4  # a count
    rounds = {tuple(sample_clients(10, 0.3, 0, r)) for r in range(1, 20)}
    assert len(rounds) > 5  # other rounds, other clients
    with pytest.raises(ConfigError, match="clients_per_round must be a fraction"):
        RunConfig(clients_per_round=2.5)


@pytest.mark.slow
def test_skewed_sampled_run_resumes_exactly(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "rounds": 3,
        "local_epochs": 1,
        "label_skew": 0.5,
        "clients_per_round": 0.5,
        "client_fraction": 0.2,
        "precision": "fp32",
    }
    whole = run(RunConfig(**base, out=str(tmp_path / "whole")))
    trained = [set(r.clients) for r in whole.history]
    assert all(len(t) == 4 for t in trained) and len({frozenset(t) for t in trained}) > 1
    assert (tmp_path / "whole" / "clients.png").is_file()

    class Stop:
        def round_started(self, round_index: int, rounds: int) -> None:
            if round_index == 3:
                raise KeyboardInterrupt

        def client_finished(self, round_index: int, client_id: str) -> None: ...

        def round_finished(self, record: object) -> None: ...

    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(**base, out=str(tmp_path / "cut")), observer=Stop())
    resumed = resume(tmp_path / "cut")
    for got, want in zip(resumed.history, whole.history, strict=True):
        assert got.clients.keys() == want.clients.keys()
        assert got.per_domain_accuracy == want.per_domain_accuracy
