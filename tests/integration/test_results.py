"""summary.json's numbers against values worked out by hand."""

from __future__ import annotations

import dataclasses

import pytest

from protofl.core.records import RoundRecord
from protofl.outputs.results import summarise


def _record(round_: int, accuracy: dict[str, float], train_s: float) -> RoundRecord:
    mean = sum(accuracy.values()) / len(accuracy)
    return RoundRecord(round_, accuracy, mean, {}, {}, 0, train_s, 0.5)


def test_summary_of_a_resumed_run() -> None:
    """Six rounds, the last one run after a resume that took 4 s of wall time: the
    last-5 mean skips round 1, and the time per round comes from the rounds' records."""
    history = [
        _record(r, {"a": 0.1 * r, "b": 0.2}, train_s=10.0 if r == 1 else 2.0) for r in range(1, 7)
    ]
    summary = summarise(history, wall_seconds=4.0)
    tail = summary["last_5_rounds"]
    assert tail["per_domain_accuracy"]["a"] == pytest.approx((0.2 + 0.3 + 0.4 + 0.5 + 0.6) / 5)
    assert tail["mean_accuracy"] == pytest.approx((0.4 + 0.2) / 2)  # mean of a over 2..6 is 0.4
    assert summary["best_round"] == {"round": 6, "mean_accuracy": pytest.approx(0.4)}
    timing = summary["timing"]
    assert timing["train_seconds"] == pytest.approx(20.0)
    assert timing["eval_seconds"] == pytest.approx(3.0)
    assert timing["seconds_per_round"] == pytest.approx(23.0 / 6)  # not 4 s / 6 rounds
    assert timing["wall_seconds"] == 4.0


def test_summary_fairness_and_pooled_accuracy() -> None:
    """Spread and worst domain of the last rounds' per-domain means; pooled accuracy only
    when every round recorded it (runs from before it existed show it as missing)."""
    history = [_record(r, {"a": 0.1 * r, "b": 0.2}, train_s=1.0) for r in range(1, 7)]
    summary = summarise(history, wall_seconds=1.0)
    tail = summary["last_5_rounds"]
    # last-5 means: a 0.4, b 0.2 -> sample std sqrt(0.02), worst b
    assert tail["domain_std"] == pytest.approx(0.02**0.5)
    assert tail["worst_domain"] == {"domain": "b", "accuracy": pytest.approx(0.2)}
    assert tail["pooled_accuracy"] is None and summary["pooled_accuracy"] is None
    assert summary["worst_domain"] == {"domain": "b", "accuracy": 0.2}  # round 6: a 0.6
    pooled = [dataclasses.replace(r, pooled_accuracy=0.01 * r.round) for r in history]
    pooled[0] = dataclasses.replace(pooled[0], pooled_accuracy=None)  # outside the window
    summary = summarise(pooled, wall_seconds=1.0)
    assert summary["last_5_rounds"]["pooled_accuracy"] == pytest.approx(0.04)
    assert summary["pooled_accuracy"] == pytest.approx(0.06)


def test_a_run_shorter_than_the_window_says_so() -> None:
    from protofl.outputs.results import window_text

    assert window_text(100) == "last 5 rounds"
    assert window_text(5) == "last 5 rounds"
    assert window_text(2) == "last 2 rounds (the runs have 2, fewer than 5)"
    assert window_text(1) == "last round (the runs have 1, fewer than 5)"
