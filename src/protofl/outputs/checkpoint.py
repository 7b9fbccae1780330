"""Checkpoints: everything a run needs to continue exactly where it stopped.

One file, ``checkpoint.pt``, rewritten atomically after every round (a temporary file, then
a rename), holding the global state (weights, broadcast prototypes, server-only tensors),
every client's private state, torch's global RNG state and the per-round history. The
random streams of later rounds are derived from the seed, the client and the round
(:mod:`protofl.core.seeding`), so a resumed run ends with exactly the results of an
uninterrupted one. Loading uses ``torch.load(weights_only=True)``: tensors and plain
containers only, so a checkpoint cannot execute code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from protofl.core.payloads import GlobalState, Prototypes, StateDict
from protofl.core.records import RoundRecord
from protofl.errors import DataError
from protofl.outputs.results import how_to_continue, write_failure
from protofl.sim.simulator import Simulation

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


@dataclass(eq=False)
class Snapshot:
    """What a checkpoint holds: the server's state, the rounds so far, the clients' private
    states (in the simulator; on Flower they stay on the nodes) and torch's RNG."""

    state: GlobalState
    history: list[RoundRecord]
    client_states: dict[str, StateDict] = field(default_factory=dict)


def save_snapshot(out_dir: Path, snapshot: Snapshot) -> Path:
    """Write a checkpoint atomically: a temporary file, fsync, then a rename."""
    state = snapshot.state
    payload: dict[str, Any] = {
        "format": FORMAT,
        "round": state.round,
        "weights": state.weights,
        "tensors": state.tensors,
        "prototypes": _prototypes_dict(state.prototypes),
        "client_states": snapshot.client_states,
        "torch_rng": torch.get_rng_state(),
        "history": json.dumps([dataclasses.asdict(r) for r in snapshot.history]),
    }
    path = out_dir / CHECKPOINT
    temporary = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, temporary)
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError
        temporary.unlink(missing_ok=True)
        raise DataError(
            f"could not write the checkpoint of round {state.round} to {path}: "
            f"{write_failure(err, out_dir)}. {how_to_continue(out_dir)}"
        ) from err
    return path


def load_checkpoint(out_dir: Path, simulation: Simulation) -> int:
    """Restore ``simulation`` from ``out_dir/checkpoint.pt``; return the round it reached."""
    device = next(simulation.model.parameters()).device
    snapshot = load_snapshot(out_dir, simulation.model.state_dict(), device)
    # a part resumed in another precision (fp32 <-> fp64) continues in its own dtype
    dtype = simulation.precision.dtype
    state = snapshot.state
    prototypes = state.prototypes
    if prototypes is not None and prototypes.vectors.is_floating_point():
        prototypes = prototypes.with_vectors(prototypes.vectors.to(dtype))
    simulation.state = dataclasses.replace(
        state,
        weights=_as_dtype(state.weights, dtype),
        tensors=_as_dtype(state.tensors, dtype),
        prototypes=prototypes,
    )
    simulation.history = snapshot.history
    simulation.client_states = {k: _as_dtype(v, dtype) for k, v in snapshot.client_states.items()}
    simulation.model.load_state_dict(simulation.state.weights)
    return simulation.state.round


def _as_dtype(tensors: StateDict, dtype: torch.dtype) -> StateDict:
    """Floating tensors in ``dtype``; integer ones (counters) as they are."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}


def load_snapshot(out_dir: Path, expected: StateDict, device: torch.device) -> Snapshot:
    """Read ``out_dir/checkpoint.pt`` (tensors only, never code), check that its weights fit
    ``expected``, restore torch's RNG state and return what it holds."""
    path = out_dir / CHECKPOINT
    if not path.is_file():
        raise DataError(
            f"{path}: no checkpoint here, so there is nothing to resume. A run writes one after "
            "its first complete round."
        )
    payload = _read(path)
    weights = _tensors(payload, "weights", path, device)
    if weights.keys() != expected.keys():
        raise DataError(f"{path}: the saved weights do not fit this run's model.")
    state = GlobalState(
        round=int(payload["round"]),
        weights=weights,
        prototypes=_prototypes(payload.get("prototypes") or {}, device),
        tensors=_tensors(payload, "tensors", path, device),
    )
    client_states = {
        str(cid): {k: v.to(device) for k, v in client.items()}
        for cid, client in dict(payload["client_states"]).items()
    }
    history = [RoundRecord(**r) for r in json.loads(payload["history"])]
    torch.set_rng_state(payload["torch_rng"])
    return Snapshot(state, history, client_states)


def _read(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(
            f"{path}: cannot read the checkpoint ({type(err).__name__}: {err}). It is either "
            "truncated or not a protofl checkpoint; checkpoints load tensors only and never "
            "run code."
        ) from err
    required = ("format", "round", "weights", "tensors", "client_states", "torch_rng", "history")
    if not isinstance(payload, dict) or any(key not in payload for key in required):
        raise DataError(f"{path}: not a protofl checkpoint (missing entries).")
    if payload["format"] != FORMAT:
        raise DataError(f"{path}: checkpoint format {payload['format']}, expected {FORMAT}.")
    return payload


def _tensors(payload: dict[str, Any], key: str, path: Path, device: torch.device) -> StateDict:
    value = payload[key]
    if not isinstance(value, dict) or not all(isinstance(t, torch.Tensor) for t in value.values()):
        raise DataError(f"{path}: entry {key!r} is not a dict of tensors.")
    return {str(k): t.to(device) for k, t in value.items()}


def _prototypes_dict(prototypes: Prototypes | None) -> dict[str, torch.Tensor]:
    if prototypes is None:
        return {}
    saved = {
        "vectors": prototypes.vectors,
        "labels": prototypes.labels,
        "support": prototypes.support,
    }
    return saved if prototypes.domains is None else {**saved, "domains": prototypes.domains}


def _prototypes(saved: dict[str, torch.Tensor], device: torch.device) -> Prototypes | None:
    if not saved:
        return None
    domains = saved.get("domains")
    return Prototypes(saved["vectors"], saved["labels"], saved["support"], domains).to(device)
