"""What a run leaves on disk: config.json, metrics.jsonl (a line per round), summary.json."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protofl.core.records import RoundRecord
from protofl.core.stats import domain_std, worst_domain
from protofl.errors import ConfigError, DataError

LAST_ROUNDS = 5  # the paper reports accuracy averaged over the last five rounds


def window_text(rounds: int) -> str:
    """What "the last 5 rounds" is for runs of ``rounds`` rounds: a shorter run says so."""
    if rounds >= LAST_ROUNDS:
        return f"last {LAST_ROUNDS} rounds"
    shown = "last round" if rounds == 1 else f"last {rounds} rounds"
    return f"{shown} (the runs have {rounds}, fewer than {LAST_ROUNDS})"


def prepare_out_dir(path: Path, overwrite: bool = False) -> Path:
    """Create ``path``; refuse one that already holds results unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path {str(path)!r} exists and is not a directory.")
    if (path / "metrics.jsonl").exists() and not overwrite:
        raise ConfigError(
            f"{str(path)!r} already holds the results of a run. Choose another --out, or pass "
            "--overwrite to replace them."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / "metrics.jsonl").unlink(missing_ok=True)
        (path / ".write-test").write_text("")
        (path / ".write-test").unlink()
    except OSError as err:
        raise ConfigError(
            f"cannot write the run folder {str(path)!r} ({err.strerror or err}): is it on a "
            "read-only or full file system? Choose another --out."
        ) from err
    return path


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically: a temporary file in the same directory, then a rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)


def write_failure(err: BaseException, folder: Path) -> str:
    """Why a write failed, in words: torch reports a full disk as "unexpected pos"."""
    code = getattr(err, "errno", None)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if code == errno.ENOSPC or (free is not None and free < 1 << 20):
        shown = "" if free is None else f", {free // 1024} KiB free"
        return f"the disk is full ({folder}{shown})"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"the folder cannot be written ({getattr(err, 'strerror', None) or err})"
    return f"{type(err).__name__}: {err}"


def how_to_continue(folder: Path) -> str:
    """What to do after a failed write: resume from the last checkpoint, or start again."""
    if (folder / "checkpoint.pt").is_file():
        return (
            "The previous round's checkpoint is intact: free space, then continue with "
            f"protofl run --resume {folder}"
        )
    return (
        "No checkpoint was written yet, so there is nothing to resume: free space, then start "
        f"the run again with --overwrite (--out {folder})"
    )


def append_round(path: Path, record: RoundRecord) -> None:
    """Append one round to ``metrics.jsonl`` and flush it to disk."""
    try:
        with (path / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(dataclasses.asdict(record)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        raise DataError(
            f"could not record round {record.round} in {path / 'metrics.jsonl'}: "
            f"{write_failure(err, path)}. {how_to_continue(path)}"
        ) from err


def rewrite_rounds(path: Path, history: Sequence[RoundRecord]) -> None:
    """Replace ``metrics.jsonl`` with ``history`` (on resume: drop rounds after the checkpoint)."""
    lines = "".join(json.dumps(dataclasses.asdict(r)) + "\n" for r in history)
    temporary = path / "metrics.jsonl.tmp"
    temporary.write_text(lines)
    os.replace(temporary, path / "metrics.jsonl")


def summarise(history: Sequence[RoundRecord], wall_seconds: float) -> dict[str, Any]:
    """Final-round accuracies plus the paper's last-5-rounds mean, the best round, timing.

    The spread across domains and the worst domain of the last rounds are those of their
    per-domain means (the numbers a table shows side by side), not means of each round's."""
    final = history[-1]
    tail = history[-LAST_ROUNDS:]
    domains = list(final.per_domain_accuracy)
    best = max(history, key=lambda record: record.mean_accuracy)
    train = sum(r.train_seconds for r in history)
    evaluation = sum(r.eval_seconds for r in history)
    tail_accuracy = {d: sum(r.per_domain_accuracy[d] for r in tail) / len(tail) for d in domains}
    pooled = [r.pooled_accuracy for r in tail if r.pooled_accuracy is not None]
    return {
        "rounds": final.round,
        "per_domain_accuracy": final.per_domain_accuracy,
        "mean_accuracy": final.mean_accuracy,
        **fairness(final.per_domain_accuracy, final.pooled_accuracy),
        f"last_{LAST_ROUNDS}_rounds": {
            "per_domain_accuracy": tail_accuracy,
            "mean_accuracy": sum(r.mean_accuracy for r in tail) / len(tail),
            # records written before pooled accuracy existed have none: shown as missing
            **fairness(
                tail_accuracy, sum(pooled) / len(tail) if len(pooled) == len(tail) else None
            ),
            **_personal_tail(tail),
            **_holdout_tail(tail),
            **_attack_tail(tail),
        },
        **_attack_tail([final]),
        "best_round": {"round": best.round, "mean_accuracy": best.mean_accuracy},
        "absent_clients": _absences(history),
        "timing": {
            # this process only: a resumed run's earlier rounds ran in another process
            "wall_seconds": wall_seconds,
            "train_seconds": train,
            "eval_seconds": evaluation,
            # from every round's own record, so it stays right across resumes
            "seconds_per_round": (train + evaluation) / len(history),
        },
    }


def fairness(per_domain: dict[str, float], pooled: float | None) -> dict[str, Any]:
    """The spread across domains, the worst domain and the pooled accuracy, for a summary."""
    worst, worst_accuracy = worst_domain(per_domain)
    return {
        "domain_std": domain_std(per_domain),
        "worst_domain": {"domain": worst, "accuracy": worst_accuracy},
        "pooled_accuracy": pooled,
    }


def _absences(history: Sequence[RoundRecord]) -> dict[str, list[int]]:
    """Which clients missed which rounds (empty when everyone always arrived)."""
    missed: dict[str, list[int]] = {}
    for record in history:
        for client in record.absent:
            missed.setdefault(client, []).append(record.round)
    return missed


def _attack_tail(rounds: Sequence[RoundRecord]) -> dict[str, Any]:
    """The backdoor's mean success over ``rounds``, where the run had one (attack=backdoor)."""
    scored = [r.attack_success_rate for r in rounds if r.attack_success_rate is not None]
    return {"attack_success_rate": sum(scored) / len(scored)} if scored else {}


def _holdout_tail(tail: Sequence[RoundRecord]) -> dict[str, Any]:
    """The last rounds' accuracy on held-out (unseen) domains, where the run had any."""
    scored = [r.holdout_accuracy for r in tail if r.holdout_accuracy is not None]
    if not scored:
        return {}
    per_domain = {d: sum(s[d] for s in scored) / len(scored) for d in scored[-1]}
    return {
        "holdout_per_domain_accuracy": per_domain,
        "holdout_mean_accuracy": sum(per_domain.values()) / len(per_domain),
    }


def _personal_tail(tail: Sequence[RoundRecord]) -> dict[str, Any]:
    """The last rounds' personalised accuracies, for algorithms with local layers."""
    scored = [r for r in tail if r.personal_accuracy is not None]
    if not scored:
        return {}
    domains = list(scored[-1].personal_accuracy or {})
    return {
        "personal_per_domain_accuracy": {
            d: sum((r.personal_accuracy or {})[d] for r in scored) / len(scored) for d in domains
        },
        "personal_mean_accuracy": sum(r.personal_mean_accuracy or 0.0 for r in scored)
        / len(scored),
    }
