"""The run configuration: one frozen dataclass, built from defaults < preset < command line.

Presets are TOML files whose top-level keys are :class:`RunConfig` fields; a table named
after an algorithm holds that algorithm's options (``[fpl] temperature = 0.02``) and a
``[clients_per_domain]`` table overrides the benchmark's allocation. On the command line the
same keys are set with ``--set key=value`` (``--set fpl.temperature=0.05``). Unknown keys
are errors with a "did you mean"; presets apply only when asked for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from protofl.config.robustness import BACKDOOR_FRACTION, BACKDOOR_TARGET, check_aggregation
from protofl.core.registry import unknown_name_message
from protofl.core.validation import FrozenMap, check_fields, thaw
from protofl.errors import ConfigError

# Images scored per forward pass when testing. Small batches are faster on a CPU (ResNet-10 at
# 32 px, fp32, one thread: batches of 64 took 0.76 and 0.83 of the time of one batch of 512
# in two runs of benchmarks/eval_batch.py) and cost a GPU little beside training (not
# timed there); predictions do not
# depend on it beyond last-bit rounding, so it is an execution setting (outputs/report.py).
EVAL_BATCH_SIZE = 64

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. Defaults run FPL on the embedded benchmark."""

    algorithm: str = "fpl"
    benchmark: str = "embedded"
    domains: tuple[str, ...] = ()  # empty: all of the benchmark's domains
    # domains no client holds: the global model is scored on all of each one's data every
    # round (holdout_accuracy), as federated domain generalisation measures an unseen domain
    holdout_domains: tuple[str, ...] = ()
    data_dir: str | None = None  # else $PROTOFL_DATA_DIR
    download: bool = False  # fetch MNIST/USPS/SVHN (or DomainNet) when missing, checksummed
    cache_dir: str | None = None  # else $PROTOFL_CACHE_DIR or ~/.cache/protofl
    image_size: int = 32  # side of the square images the model sees (32: the FPL protocol)
    classes: tuple[str, ...] = ()  # folder benchmarks (folders, pacs, ...): only these classes
    skip_unreadable_images: bool = False  # folder benchmarks: leave out and count broken files
    model: str = "auto"  # auto: the benchmark's default model
    rounds: int = 10
    local_epochs: int = 5
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-5
    seed: int = 0
    # generated data (the embedded benchmark) and the 80/20 split of folders that give none
    dataset_seed: int = 0
    clients_per_domain: Mapping[str, int] = field(default_factory=FrozenMap)  # overrides
    client_fraction: float | None = None  # None: the benchmark's share per client
    augment: bool = True
    eval_batch_size: int = EVAL_BATCH_SIZE
    device: str = "auto"  # auto: cuda if available, else cpu
    precision: str = "auto"  # auto: bf16 where the device has it natively, else fp32; fp64
    compile: str = ""  # torch.compile backend for the local forward pass ("inductor"); "": off
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    deterministic: bool = False  # torch's deterministic kernels (for GPUs; see docs/devices.md)
    out: str | None = None  # output directory; None: runs/<algorithm>-<benchmark>-<time>
    privacy_clip_norm: float = 0.0  # > 0: clip each uploaded prototype to this L2 norm
    privacy_noise_multiplier: float = 0.0  # Gaussian noise std = this x privacy_clip_norm
    privacy_delta: float = 1e-5  # the delta at which the spent epsilon is reported
    # secure: noise from the OS's randomness, unknown to the server; seeded: reproducible from
    # the run's seed, so anyone who knows the seed (the server) can remove it
    privacy_noise: str = "secure"
    label_skew: float = 0.0  # > 0: Dirichlet(alpha) class split among a domain's clients
    # > 0: this share of every client's training data, class-stratified and seeded, is held
    # out and scored each round (validation_accuracy), for choosing methods and options
    # without looking at the test set; 0 (the papers' protocol) trains on everything
    validation_fraction: float = 0.0
    tensorboard: bool = False  # event files (scalars, prototype projector) in the run folder
    clients_per_round: float = 1.0  # <= 1: fraction of all clients trained per round; > 1: count
    aggregation: str = "mean"  # how client weights combine (robustness.WEIGHT_RULES)
    trim_fraction: float = 0.1  # trimmed-mean: share of clients dropped at each end
    # krum, multi-krum, bulyan: the share of clients assumed malicious (f = floor(x K))
    assumed_malicious: float = 0.2
    clip_norm: float = 0.0  # norm-clip: the bound M on each update's norm; 0: the round's median
    root_size: int = 100  # fltrust: samples in the server's root set, drawn from training data
    # prototype methods: all (as published), median or centre-filter (docs/defences.md)
    prototype_aggregation: str = "all"
    prototype_min_cosine: float = 0.0  # centre-filter: least cosine to the class's centre
    # > 0 (>= 1): before aggregating, leave out every update whose distance from the global
    # model exceeds this x the round's median distance; any algorithm, FedHEAL included
    distance_screen: float = 0.0
    # robustness experiments (protofl.engine.attacks, docs/attacks.md): robustness.ATTACK_NAMES, by
    # round(malicious_fraction x K) seeded clients or the named malicious_clients
    attack: str = ""
    malicious_fraction: float = 0.0
    malicious_clients: tuple[str, ...] = ()
    # None: each attack's default. sign-flip's scale and noise's std (1); alie's z (the
    # paper's z_max from the number of clients and liars); not for NO_STRENGTH
    attack_strength: float | None = None
    # min-max / min-sum: the perturbation direction of Shejwalkar & Houmansadr (NDSS 2021):
    # "std" (-std, their default), "unit" (-unit vector of the mean update), "sign"
    attack_perturbation: str = "std"
    # backdoor: the class the trigger should give, and each liar's share of poisoned samples
    backdoor_target: int = BACKDOOR_TARGET
    backdoor_fraction: float = BACKDOOR_FRACTION
    algorithm_options: Mapping[str, Mapping[str, Any]] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        """Every rule on the settings, checked once, before any data or model is touched:
        types (converted where lossless), ranges, names, and every algorithm's options."""
        check_fields(self)
        _check_ranges(self)
        _check_algorithms(self)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _check_ranges(config: RunConfig) -> None:
    for name in ("rounds", "local_epochs", "batch_size", "eval_batch_size", "image_size"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1; got {getattr(config, name)}.")
    for name in (
        "lr",
        "momentum",
        "weight_decay",
        "privacy_clip_norm",
        "trim_fraction",
        "label_skew",
    ):
        if not math.isfinite(getattr(config, name)):
            raise ConfigError(f"{name} must be a finite number; got {getattr(config, name)}.")
    if config.lr <= 0:
        raise ConfigError(f"lr must be > 0; got {config.lr}.")
    if config.momentum < 0 or config.weight_decay < 0 or config.threads < 0:
        raise ConfigError("momentum, weight_decay and threads must be >= 0.")
    per_round = config.clients_per_round
    if not (
        math.isfinite(per_round) and per_round > 0 and (per_round <= 1 or per_round.is_integer())
    ):
        raise ConfigError(
            "clients_per_round must be a fraction in (0, 1] or a whole number of clients; got "
            f"{per_round}."
        )
    if config.label_skew < 0:
        raise ConfigError(
            f"label_skew must be >= 0 (0: no skew; the Dirichlet alpha, e.g. 0.5); got "
            f"{config.label_skew}."
        )
    if not (math.isfinite(config.validation_fraction) and 0 <= config.validation_fraction < 1):
        raise ConfigError(
            f"validation_fraction must lie in [0, 1) (0: no validation split, e.g. 0.1); got "
            f"{config.validation_fraction}."
        )
    if config.client_fraction is not None and not 0 < config.client_fraction <= 1:
        raise ConfigError(f"client_fraction must lie in (0, 1]; got {config.client_fraction}.")
    for domain, count in config.clients_per_domain.items():
        if count < 0:
            raise ConfigError(f"clients_per_domain.{domain} must be >= 0; got {count}.")
    _check_privacy(config)
    check_aggregation(config)


def _check_privacy(config: RunConfig) -> None:
    if config.privacy_clip_norm < 0 or config.privacy_noise_multiplier < 0:
        raise ConfigError("privacy_clip_norm and privacy_noise_multiplier must be >= 0.")
    if config.privacy_noise_multiplier > 0 and config.privacy_clip_norm == 0:
        raise ConfigError(
            "privacy_noise_multiplier is set but privacy_clip_norm is 0: noise is scaled "
            "to the clipping norm, so set privacy_clip_norm too."
        )
    if not 0 < config.privacy_delta < 1:
        raise ConfigError(f"privacy_delta must lie in (0, 1); got {config.privacy_delta}.")
    if config.privacy_noise not in ("secure", "seeded"):
        raise ConfigError(
            f"privacy_noise must be 'secure' (the default) or 'seeded'; got "
            f"{config.privacy_noise!r}."
        )


def _check_algorithms(config: RunConfig) -> None:
    """The algorithm and every algorithm's options (selected or not) by their own rules."""
    # imported here: the registry pulls in torch, which config itself does not need
    from protofl.algorithms import ALGORITHMS

    spec = ALGORITHMS.get(config.algorithm)
    if config.aggregation != "mean" and not spec.applies_weight_rule:
        raise ConfigError(
            f"{config.algorithm} combines the clients' weights by its own rule, so "
            f"aggregation={config.aggregation!r} would be ignored; use aggregation='mean' "
            f"with {config.algorithm}, or the rule with an algorithm that applies it."
        )
    if config.prototype_aggregation != "all" and not spec.sends_prototypes:
        senders = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).sends_prototypes]
        raise ConfigError(
            f"prototype_aggregation={config.prototype_aggregation!r} defends the prototypes "
            f"clients upload, and {config.algorithm} uploads none; use it with one of "
            f"{', '.join(senders)}, or a weight rule (aggregation) for {config.algorithm}."
        )
    for section, options in config.algorithm_options.items():
        if section not in ALGORITHMS:
            raise ConfigError(unknown_name_message("algorithm", section, ALGORITHMS.names()))
        ALGORITHMS.get(section).make_config(options)


def options_not_running(
    sections: Iterable[str], running: Iterable[str], how: Callable[[str], str]
) -> str | None:
    """A warning when options were given for algorithms that will not run (they would be
    accepted and have no effect, e.g. ``--set fedprox.mu=0.1`` on an FPL run), or None.
    ``how(section)`` spells the options as the caller gave them."""
    idle = sorted(set(sections) - set(running))
    if not idle:
        return None
    listed = ", ".join(how(section) for section in idle)
    return (
        f"options given for {', '.join(idle)}, which this run does not run "
        f"({', '.join(sorted(set(running)))}): {listed} have no effect."
    )


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
# Spellings users reach for, pointing at the real setting (for "did you mean")
ALIASES = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "epochs": "local_epochs",
    "local_epoch": "local_epochs",
    "num_rounds": "rounds",
    "communication_rounds": "rounds",
    "batch": "batch_size",
    "batchsize": "batch_size",
    "wd": "weight_decay",
    "algo": "algorithm",
    "method": "algorithm",
    "dataset": "benchmark",
    "data_path": "data_dir",
    "output": "out",
    "output_dir": "out",
    "out_dir": "out",
    "num_threads": "threads",
    "dtype": "precision",
    "amp": "precision",
    "aggregator": "aggregation",
}
PRESET_DIR = "presets"


def list_presets() -> list[str]:
    """Names of the presets shipped with protofl."""
    folder = resources.files("protofl").joinpath(PRESET_DIR)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_summary(name: str) -> str:
    """A shipped preset's ``# summary:`` line (or its first comment line)."""
    text = resources.files("protofl").joinpath(PRESET_DIR, f"{name}.toml").read_text()
    lines = text.splitlines()
    summary = next((line for line in lines if line.startswith("# summary:")), None)
    first = summary or next((line for line in lines if line.startswith("#")), "")
    return first.removeprefix("# summary:").lstrip("# ").strip()


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A shipped preset by name, or a TOML file by path, as a nested dict."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"preset file {str(path)!r} does not exist.")
        text = path.read_text()
    else:
        if name_or_path not in list_presets():
            raise ConfigError(unknown_name_message("preset", name_or_path, list_presets()))
        resource = resources.files("protofl").joinpath(PRESET_DIR, f"{name_or_path}.toml")
        text = resource.read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"preset {name_or_path!r} is not valid TOML: {err}") from err


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["rounds=5", "fpl.temperature=0.1"]`` -> ``{"rounds": 5, "fpl": {"temperature": 0.1}}``.

    Values are read as TOML literals (numbers, booleans, quoted strings, arrays); anything
    that does not parse is taken as a plain string.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value; got {item!r}.")
        value = _parse_value(raw.strip())
        target = result
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return result


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; nested tables merge key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = value
    return merged


def build_config(values: Mapping[str, Any], algorithm_names: Sequence[str]) -> RunConfig:
    """Validate a nested dict of settings and build the :class:`RunConfig`."""
    kwargs: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key in algorithm_names:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}: expected a table of {key}'s options; got {value!r}.")
            options[key] = dict(value)
        elif key in FIELDS and key != "algorithm_options":
            kwargs[key] = value
        else:
            known = [*(f for f in FIELDS if f != "algorithm_options"), *algorithm_names]
            raise ConfigError(unknown_name_message("setting", key, known, ALIASES))
    explicit = kwargs.pop("algorithm_options", {})
    return RunConfig(**kwargs, algorithm_options=merge(thaw(explicit), options))


def config_from_dict(values: Mapping[str, Any]) -> RunConfig:
    """Rebuild a :class:`RunConfig` from its ``to_dict()`` form (e.g. a saved config.json);
    keys that are not fields (such as ``resolved``) are ignored."""
    return RunConfig(**{key: value for key, value in values.items() if key in FIELDS})


def as_settings(config: RunConfig) -> dict[str, Any]:
    """The layered-settings form of ``config`` (algorithm options as per-algorithm tables),
    which :func:`merge` and :func:`build_config` take."""
    values = config.to_dict()
    options = values.pop("algorithm_options")
    return {**values, **options}


def differences(old: RunConfig, new: RunConfig) -> list[str]:
    """Names of the fields whose values differ."""
    before, after = old.to_dict(), new.to_dict()
    return [key for key in before if before[key] != after[key]]


def dumps(config: RunConfig, extra: Mapping[str, Any] | None = None) -> str:
    """The resolved configuration as JSON (what ``config.json`` holds)."""
    return json.dumps({**config.to_dict(), **(extra or {})}, indent=2, sort_keys=True)
