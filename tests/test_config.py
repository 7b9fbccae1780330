"""Configuration: precedence, presets, --set parsing and the errors for bad keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from protofl.algorithms import ALGORITHMS, AlgorithmContext, build_algorithm
from protofl.config import (
    RunConfig,
    build_config,
    list_presets,
    load_preset,
    merge,
    parse_assignments,
)
from protofl.errors import ConfigError

NAMES = ALGORITHMS.names()


def test_defaults_run_fpl_on_the_embedded_benchmark() -> None:
    config = RunConfig()
    assert (config.algorithm, config.benchmark, config.model) == ("fpl", "embedded", "auto")
    assert (config.lr, config.momentum, config.weight_decay, config.batch_size) == (
        0.01,
        0.9,
        1e-5,
        64,
    )


def test_assignments_parse_values_and_nested_keys() -> None:
    parsed = parse_assignments(
        ["rounds=5", "lr=0.1", "augment=false", "fpl.temperature=0.05", "domains=mnist,usps"]
    )
    assert parsed == {
        "rounds": 5,
        "lr": 0.1,
        "augment": False,
        "fpl": {"temperature": 0.05},
        "domains": "mnist,usps",
    }
    config = build_config(parsed, NAMES)
    assert config.domains == ("mnist", "usps")
    assert config.algorithm_options == {"fpl": {"temperature": 0.05}}


def test_precedence_defaults_preset_set_flags() -> None:
    preset = {"rounds": 100, "local_epochs": 10, "lr": 0.5}
    from_set = parse_assignments(["rounds=7"])
    flags = {"rounds": 3}
    config = build_config(merge(preset, from_set, flags), NAMES)
    assert (config.rounds, config.local_epochs, config.lr) == (3, 10, 0.5)


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'round'\. Did you mean 'rounds'"):
        build_config({"round": 3}, NAMES)


def test_wrong_types_and_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="rounds: expected int; got 'x'"):
        build_config({"rounds": "x"}, NAMES)
    with pytest.raises(ConfigError, match=r"rounds must be >= 1"):
        build_config({"rounds": 0}, NAMES)
    with pytest.raises(ConfigError, match=r"client_fraction must lie in"):
        build_config({"client_fraction": 1.5}, NAMES)
    with pytest.raises(ConfigError, match="clients_per_domain: expected dict"):
        build_config({"clients_per_domain": {"mnist": "three"}}, NAMES)
    with pytest.raises(ConfigError, match="expects key=value"):
        parse_assignments(["rounds"])


def test_algorithm_options_are_validated_with_suggestions() -> None:
    context = AlgorithmContext(num_classes=10, feature_dim=8, rounds=1)
    with pytest.raises(ConfigError, match="Did you mean 'temperature'"):
        build_algorithm("fpl", {"temprature": 0.1}, context)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        build_algorithm("fpl", {"temperature": 0.0}, context)
    with pytest.raises(ConfigError, match="'mean' \\(reference code\\) or 'sum'"):
        build_algorithm("fpl", {"upcr_reduction": "max"}, context)
    with pytest.raises(ConfigError, match="Did you mean 'fpl'"):
        build_algorithm("fp1", {}, context)


def test_shipped_presets_load_and_build() -> None:
    assert {"paper-digits", "paper-office"} <= set(list_presets())
    for name in list_presets():
        config = build_config(load_preset(name), NAMES)
        assert config.rounds >= 1
    office = build_config(load_preset("paper-office"), NAMES)
    assert (office.rounds, office.local_epochs, office.model) == (100, 10, "resnet10")
    assert office.clients_per_domain == {"caltech": 3, "amazon": 2, "webcam": 1, "dslr": 4}


def test_preset_files_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("rounds = 4\n[fpl]\ntemperature = 0.1\n")
    config = build_config(load_preset(str(path)), NAMES)
    assert config.rounds == 4 and config.algorithm_options["fpl"]["temperature"] == 0.1
    broken = tmp_path / "broken.toml"
    broken.write_text("rounds = = 4")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_preset(str(broken))
    with pytest.raises(ConfigError, match="Did you mean 'paper-office'"):
        load_preset("paper-ofice")
