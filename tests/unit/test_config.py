"""Configuration: precedence, presets, --set parsing and the errors for bad keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from protofl.algorithms import ALGORITHMS, AlgorithmContext, build_algorithm
from protofl.config import (
    RunConfig,
    build_config,
    config_from_dict,
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
    with pytest.raises(ConfigError, match="clients_per_domain: expected a table of int"):
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


def test_the_python_api_checks_types_as_the_cli_does() -> None:
    with pytest.raises(ConfigError, match=r"lr: expected float; got '0.05' \(str\)"):
        RunConfig(lr="0.05")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"batch_size: expected int; got 3.5"):
        RunConfig(batch_size=3.5)  # type: ignore[arg-type]
    assert RunConfig(lr=1).lr == 1.0 and isinstance(RunConfig(lr=1).lr, float)
    assert RunConfig(domains=["a", "b"]).domains == ("a", "b")  # type: ignore[arg-type]


def test_every_algorithms_options_are_checked_at_load_selected_or_not() -> None:
    with pytest.raises(
        ConfigError, match=r"option of fpl 'temprature'. Did you mean 'temperature'"
    ):
        build_config({"fpl": {"temprature": 0.1}}, NAMES)
    with pytest.raises(ConfigError, match=r"option of moon 'muu'. Did you mean 'mu'"):
        build_config({"algorithm": "fpl", "moon": {"muu": 1}}, NAMES)
    with pytest.raises(ConfigError, match=r"moon.temperature must be > 0"):
        RunConfig(algorithm_options={"moon": {"temperature": 0.0}})
    with pytest.raises(ConfigError, match=r"fedprox.mu: expected float"):
        build_config({"fedprox": {"mu": "big"}}, NAMES)
    with pytest.raises(ConfigError, match=r"unknown algorithm 'fp1'. Did you mean 'fpl'"):
        RunConfig(algorithm_options={"fp1": {}})


def test_booleans_as_python_and_toml_users_type_them() -> None:
    for typed, value in (("false", False), ("False", False), ("TRUE", True), ("true", True)):
        settings = parse_assignments([f"augment={typed}"])
        assert build_config(settings, NAMES).augment is value
    with pytest.raises(ConfigError, match=r"augment: expected bool"):
        build_config({"augment": "nope"}, NAMES)


def test_suggestions_find_the_short_name_from_its_long_form() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'lernrate'. Did you mean 'lr'"):
        build_config({"lernrate": 0.1}, NAMES)
    with pytest.raises(ConfigError, match=r"Did you mean 'local_epochs'"):
        build_config({"epochs": 3}, NAMES)


def test_config_is_immutable_all_the_way_down_and_hashable() -> None:
    config = build_config({"fpl": {"temperature": 0.1}, "clients_per_domain": {"a": 2}}, NAMES)
    assert hash(config) == hash(config_from_dict(config.to_dict()))
    with pytest.raises(TypeError):
        config.algorithm_options["fpl"]["temperature"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        config.clients_per_domain["a"] = 3  # type: ignore[index]
    assert config.to_dict()["algorithm_options"] == {"fpl": {"temperature": 0.1}}


def test_a_typo_fails_before_torch_data_or_the_simulator_load() -> None:
    """The CLI checks every setting first: no data module, no simulator in the process."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from protofl.cli import main\n"
        "rc = main(['run', '--set', 'moon.muu=1'])\n"
        "loaded = [m for m in ('protofl.api', 'protofl.data.benchmarks', 'protofl.sim.simulator',"
        " 'finch', 'sklearn') if m in sys.modules]\n"
        "print(rc, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "2 []", done.stdout + done.stderr
    assert "option of moon 'muu'" in done.stderr and "Did you mean 'mu'" in done.stderr


def test_options_for_an_algorithm_that_does_not_run_are_named() -> None:
    from protofl.config import options_not_running

    def spelled(name: str) -> str:
        return f"--set {name}.x=..."

    assert options_not_running(["fpl"], ["fpl"], spelled) is None
    warning = options_not_running(["fedprox", "fpl"], ["fpl"], spelled)
    assert warning == (
        "options given for fedprox, which this run does not run (fpl): "
        "--set fedprox.x=... have no effect."
    )
    # a comparison runs several: only the ones outside it are named
    assert options_not_running(["moon", "fpl"], ["fpl", "moon"], spelled) is None
