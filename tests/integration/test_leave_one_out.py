"""`protofl compare --holdout each`: one comparison per held-out domain and the
leave-one-domain-out table (rows: methods; columns: held-out domain, mean), on a tiny run,
and for a round on the real Office-Caltech files when PROTOFL_DATA_DIR is set."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from protofl.cli import main
from protofl.errors import ConfigError
from protofl.outputs.compare import ComparePlan
from protofl.outputs.leave_one_out import domains_to_hold_out

TINY = [
    "--domains",
    "handwritten,strokes",
    "--rounds",
    "1",
    "--local-epochs",
    "1",
    "--quiet",
    "--no-plots",
    "--set",
    "client_fraction=0.1",
    "--set",
    "threads=1",
    "--set",
    "precision='fp32'",
]


@pytest.mark.slow
def test_each_domain_is_held_out_once_and_tabulated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lodo"
    args = ["compare", "--algorithms", "fedavg,fpl", "--seeds", "0,1", "--holdout", "each"]
    assert main([*args, *TINY, "--out", str(out)]) == 0
    written = json.loads((out / "results.json").read_text())["leave_one_domain_out"]
    held = ["handwritten", "strokes"]
    assert written["held_out"] == held and list(written["rows"]) == ["fedavg", "fpl"]
    for domain in held:
        config = json.loads(
            (out / f"holdout-{domain}" / "runs" / "fpl-seed1" / "config.json").read_text()
        )
        assert config["holdout_domains"] == [domain]
        assert domain not in config["resolved"]["domains"]
    # a cell is the run's held-out accuracy; the mean averages a seed's domains first
    per_seed = []
    for seed in (0, 1):
        scores = []
        for domain in held:
            metrics = out / f"holdout-{domain}" / "runs" / f"fedavg-seed{seed}" / "metrics.jsonl"
            (record,) = [json.loads(line) for line in metrics.read_text().splitlines()]
            scores.append(100 * record["holdout_accuracy"][domain])
        assert written["rows"]["fedavg"][held[0]]["n"] == 2
        per_seed.append(statistics.fmean(scores))
    assert written["rows"]["fedavg"]["mean"]["mean"] == pytest.approx(statistics.fmean(per_seed))
    table = (out / "table.md").read_text()
    assert "| Method | handwritten | strokes | mean | seeds |" in table
    assert "not defined for a domain that no client holds" in table
    assert (out / "holdout-strokes" / "table.md").is_file()
    printed = capsys.readouterr().out
    assert "leave one domain out" in printed and "strokes" in printed


def test_holdout_each_refuses_a_fixed_holdout_and_a_single_domain(tmp_path: Path) -> None:
    fixed = ComparePlan(("fpl",), (0,), {"holdout_domains": ["strokes"]}, tmp_path)
    with pytest.raises(ConfigError, match="chooses the held-out domain itself"):
        domains_to_hold_out(fixed)
    single = ComparePlan(("fpl",), (0,), {"domains": ["strokes"]}, tmp_path)
    with pytest.raises(ConfigError, match="at least two domains"):
        domains_to_hold_out(single)


@pytest.mark.slow
@pytest.mark.realdata
def test_leave_one_domain_out_on_the_real_office_caltech(tmp_path: Path) -> None:
    folder = os.environ.get("PROTOFL_DATA_DIR")
    if not folder or not (Path(folder) / "office_dslr.npz").is_file():
        pytest.skip("set PROTOFL_DATA_DIR to the folder with office_<domain>.npz")
    out = tmp_path / "office"
    args = ["compare", "--algorithms", "fedavg", "--seeds", "0", "--holdout", "each"]
    args += ["--benchmark", "office-caltech", "--data-dir", folder, "--model", "cnn"]
    args += ["--rounds", "1", "--local-epochs", "1", "--quiet", "--no-plots", "--out", str(out)]
    args += ["--set", "threads=1", "--set", "precision='fp32'"]
    assert main(args) == 0
    written = json.loads((out / "results.json").read_text())["leave_one_domain_out"]
    assert written["held_out"] == ["caltech", "amazon", "webcam", "dslr"]
    dslr = out / "holdout-dslr" / "runs" / "fedavg-seed0"
    resolved = json.loads((dslr / "config.json").read_text())["resolved"]
    assert resolved["holdout_sizes"] == {"dslr": 157}  # all of DSLR: 127 train + 30 test
    assert 0 <= written["rows"]["fedavg"]["dslr"]["mean"] <= 100
