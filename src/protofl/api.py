"""The Python API: run a configured benchmark, or train on your own per-client arrays.

>>> from protofl import RunConfig, run
>>> result = run(RunConfig(rounds=3))                    # FPL on the embedded benchmark
>>> result.summary["per_domain_accuracy"]                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from protofl.algorithms import ALGORITHMS
from protofl.builders import (
    build_simulation,
    check_labels_fit_head,
    prepare,
    resolve_device,
    torch_threads,
)
from protofl.config import (
    RunConfig,
    as_settings,
    build_config,
    config_from_dict,
    differences,
    merge,
    options_not_running,
)
from protofl.core.payloads import GlobalState
from protofl.core.records import Observer, RoundRecord
from protofl.core.seeding import derive_seed, seeded_torch
from protofl.data.user import ClientArrays, federation_from_arrays
from protofl.errors import ConfigError
from protofl.outputs import results
from protofl.outputs.checkpoint import Snapshot, load_checkpoint
from protofl.outputs.run_folder import RunFolder
from protofl.sim.simulator import Simulation

logger = logging.getLogger(__name__)

# Settings that say how a run executes, not what it computes: a resumed run may change them.
# (threads can change the order of float sums, so the last digits may differ from an
# uninterrupted run; everything else stays exactly the same.)
EXECUTION_ONLY = frozenset({"out", "threads"})
# Settings a resumed run may change, recorded in config.json as a change after round N: more
# rounds, and the local optimiser's settings (e.g. a smaller lr after a NaN stop).
# Where it runs may change too (a GPU run continued on a CPU), recorded the same way and in
# config.json's resolved.parts.
RESUME_CHANGEABLE = frozenset({"rounds", "lr", "momentum", "weight_decay", "device", "precision"})


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a run produced: per-round records, the summary, the final model and state."""

    history: list[RoundRecord]
    summary: dict[str, Any]
    model: nn.Module
    state: GlobalState
    out_dir: Path | None
    resolved: dict[str, Any] = field(default_factory=dict)


def execute(
    simulation: Simulation,
    config: RunConfig,
    resolved: dict[str, Any],
    observer: Observer | None = None,
    write: bool = True,
    overwrite: bool = False,
    resumed_dir: Path | None = None,
) -> RunResult:
    """Run ``simulation`` to ``config.rounds``, writing results and a checkpoint after every
    round when ``write`` is set (into ``resumed_dir`` when continuing a run)."""
    folder = None
    if resumed_dir is not None:
        folder = RunFolder(resumed_dir)
        folder.add_part(resolved, simulation.state.round + 1, config.threads)
        folder.rewrite(simulation.history)
    elif write:
        folder = RunFolder.create(config, resolved, overwrite)
    started_round, started = simulation.state.round, time.perf_counter()
    federation = simulation.federation
    if folder is not None:
        domains = [t.domain for t in federation.test_sets]
        folder.start_tensorboard(config, federation.num_classes, domains)

    def after_round(sim: Simulation) -> None:
        if folder is not None:
            folder.round_done(Snapshot(sim.state, sim.history, sim.client_states))

    with folder if folder is not None else contextlib.nullcontext(), torch_threads(config.threads):
        history = simulation.run(config.rounds, observer, after_round)
        summary = results.summarise(history, time.perf_counter() - started)
        summary["resumed_from_round"] = started_round if resumed_dir is not None else None
        if folder is not None:
            folder.finish(summary)
    out_dir = folder.path if folder is not None else None
    return RunResult(history, summary, simulation.model, simulation.state, out_dir, resolved)


def resume(
    out_dir: str | Path,
    observer: Observer | None = None,
    changes: Mapping[str, Any] | None = None,
) -> RunResult:
    """Continue the run saved in ``out_dir`` from its last checkpoint.

    ``changes`` (settings given again on the command line) must agree with the saved
    configuration; a resumed run with other settings would not be the same experiment.
    """
    folder = Path(out_dir)
    saved = original = saved_config(folder)
    if changes:
        wanted = build_config(merge(as_settings(saved), changes), ALGORITHMS.names())
        check_same_settings(folder, saved, wanted, allowed=RESUME_CHANGEABLE)
        saved = dataclasses.replace(wanted, out=original.out)
    with torch_threads(saved.threads):
        simulation, resolved = prepare(saved)
    load_checkpoint(folder, simulation)
    if saved.rounds < simulation.state.round:
        raise ConfigError(
            f"{str(folder)!r} already ran {simulation.state.round} rounds; rounds can only grow "
            f"on resume (given {saved.rounds})."
        )
    record_changes(folder, original, saved, simulation.state.round)
    if simulation.state.round >= saved.rounds and (folder / "summary.json").is_file():
        raise ConfigError(
            f"{str(folder)!r} already finished all {saved.rounds} rounds; there is nothing to "
            "resume, and its results are left as they are."
        )
    logger.info("resuming %s after round %d", folder, simulation.state.round)
    return execute(simulation, saved, resolved, observer, resumed_dir=folder)


def saved_config(folder: Path) -> RunConfig:
    """The configuration a run folder was started with."""
    saved_path = folder / "config.json"
    if not saved_path.is_file():
        raise ConfigError(f"{str(folder)!r} holds no config.json; it is not a protofl run folder.")
    return config_from_dict(json.loads(saved_path.read_text()))


def check_same_settings(
    folder: Path, saved: RunConfig, wanted: RunConfig, allowed: frozenset[str] = frozenset()
) -> None:
    """Refuse to continue a run with settings that change what it computes, except the
    ``allowed`` ones (recorded as a change by :func:`record_changes`)."""
    changed = [k for k in differences(saved, wanted) if k not in EXECUTION_ONLY | allowed]
    if changed:
        listing = ", ".join(
            f"{k} (saved {getattr(saved, k)!r}, given {getattr(wanted, k)!r})" for k in changed
        )
        may = f" A resumed run may change only {', '.join(sorted(allowed))}." if allowed else ""
        raise ConfigError(
            f"cannot resume {str(folder)!r} with other settings: {listing}.{may} Resume "
            "without them, or start a new run in another --out."
        )


def record_changes(folder: Path, saved: RunConfig, wanted: RunConfig, after_round: int) -> None:
    """Write the allowed changes into ``config.json``: the new values, and under
    ``resume_changes`` which settings changed after which round (old and new values)."""
    changed = [k for k in differences(saved, wanted) if k in RESUME_CHANGEABLE]
    if not changed:
        return
    path = folder / "config.json"
    stored = json.loads(path.read_text())
    stored.update({k: getattr(wanted, k) for k in changed})
    entry = {
        "after_round": after_round,
        **{k: [getattr(saved, k), getattr(wanted, k)] for k in changed},
    }
    stored["resume_changes"] = [*stored.get("resume_changes", []), entry]
    results.write_json(path, stored)
    logger.info("resuming %s with %s changed after round %d", folder, changed, after_round)


def run(
    config: RunConfig | None = None,
    observer: Observer | None = None,
    write: bool = True,
    overwrite: bool = False,
) -> RunResult:
    """Run a configured experiment (defaults: FPL on the embedded benchmark)."""
    config = config or RunConfig()
    with torch_threads(config.threads):
        simulation, resolved = prepare(config)
    return execute(simulation, config, resolved, observer, write, overwrite)


def model_from_factory(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Call ``factory`` with torch's global RNG seeded from the run's seed (the same derived
    seed the CLI builds its models under), leaving the caller's RNG state as it was."""
    if not callable(factory):
        raise ConfigError(
            f"model must be a torch.nn.Module or a class/function that returns one; got "
            f"{type(factory).__name__}."
        )
    with seeded_torch(derive_seed(seed, "model")):
        model = factory()
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"the model factory {getattr(factory, '__name__', factory)!r} returned "
            f"{type(model).__name__}, not a torch.nn.Module."
        )
    return model


def train_federated(
    clients: Sequence[ClientArrays],
    test_sets: Mapping[str, tuple[Any, Any]],
    model: nn.Module | Callable[[], nn.Module],
    config: RunConfig | None = None,
    num_classes: int | None = None,
    observer: Observer | None = None,
    write: bool = False,
    resume_dir: str | Path | None = None,
) -> RunResult:
    """Train ``model`` federated over user-supplied per-client arrays.

    ``model`` is a model, or a class or function that makes one (``Net``, not ``Net()``).
    A factory is called under the run's seed, so the same seed gives the same initial
    weights and the same results; a ready model keeps the weights it was made with, which
    depend on torch's global random state unless you seeded it before making it.

    ``clients`` hold each client's inputs and labels (any accepted label format) and the
    name of its domain; ``test_sets`` map a domain name to ``(inputs, labels)`` for
    evaluation. ``config`` supplies the algorithm and training settings (its benchmark
    fields are ignored). The model must offer ``features`` and ``head``. With ``write``,
    results and a checkpoint go to ``config.out`` after every round; ``resume_dir``
    continues such a run from its checkpoint (same data, model and settings).
    """
    config = config or RunConfig()
    idle = options_not_running(
        config.algorithm_options,
        [config.algorithm],
        lambda name: f"algorithm_options[{name!r}]",
    )
    if idle:
        logger.warning(idle)
    if not isinstance(model, nn.Module):
        model = model_from_factory(model, config.seed)
    federation = federation_from_arrays(clients, test_sets, num_classes, config.augment)
    check_labels_fit_head(model, federation)
    device = resolve_device(config.device)
    facts = {  # what protofl report needs to tabulate the run, as for a benchmark's run
        # config.json's benchmark field keeps its default; say where the data came from
        "data_source": "arrays given to train_federated (the benchmark setting is not used)",
        "domains": [t.domain for t in federation.test_sets],
        "test_sizes": {t.domain: len(t.data) for t in federation.test_sets},
        "client_domains": {c.client_id: c.domain for c in federation.clients},
    }
    simulation, resolved = build_simulation(config, model.to(device), federation.to(device), facts)
    if resume_dir is None:
        return execute(simulation, config, resolved, observer, write)
    folder = Path(resume_dir)
    check_same_settings(folder, saved_config(folder), config)
    load_checkpoint(folder, simulation)
    return execute(simulation, config, resolved, observer, resumed_dir=folder)
