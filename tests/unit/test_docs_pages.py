"""The generated pages (README, results, speed, privacy, CLI reference) hold the numbers of the
committed result files, and the placeholders read the right figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "scripts" / "docs_pages.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pages = load_generator()


def test_committed_pages_match_a_fresh_generation() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in pages.pages().items()
        if not path.is_file() or path.read_text() != text
    ]
    assert not stale, f"run python scripts/docs_pages.py; stale: {stale}"


def test_the_pages_pictures_are_the_ones_the_results_drew() -> None:
    for path, data in pages.pictures().items():
        assert path.is_file() and path.read_bytes() == data, f"run scripts/docs_pages.py: {path}"
        assert data.startswith(b"\x89PNG")


def test_a_robustness_placeholder_reads_one_seed_or_all() -> None:
    rows = json.loads(
        (ROOT / "benchmarks/results/robustness_embedded/robustness.json").read_text()
    )["rows"]
    row = next(r for r in rows if (r["algorithm"], r["attack"], r["defence"]) == (
        "fpl", "none", "mean"))  # fmt: skip
    assert pages.robust("robustness_embedded", "fpl", "none", "mean", "seed:1") == (
        f"{row['avg_by_seed']['1']:.2f}"
    )
    assert len(row["avg_by_seed"]) == row["avg"]["n"]
    with pytest.raises(pages.TemplateError, match="has no seed:9"):
        pages.robust("robustness_embedded", "fpl", "none", "mean", "seed:9")


def test_placeholders_read_the_figures_of_results_json() -> None:
    results = json.loads(
        (ROOT / "benchmarks/results/office_paper_protocol/results.json").read_text()
    )
    row = results["rows"]["fpl-fedheal"]
    expected = f"{row['AVG']['mean']:.2f} ± {row['AVG']['std']:.2f}"
    assert pages.render("{{ cell office_paper_protocol fpl-fedheal AVG }}", "t").endswith(expected)
    stats = row["paired_statistics"]["AVG"]["last_10"]
    text = pages.paired("office_paper_protocol", "fpl-fedheal", "AVG", "10")
    assert text == (
        f"{stats['mean']:+.2f} [{stats['ci_low']:+.2f}, {stats['ci_high']:+.2f}], "
        f"p {stats['p_value']:.2f}"
    )
    # one seed: the mean alone, no "± 0.00"
    assert (
        pages.cell("office_paper_protocol", "fedavg", "AVG")
        == f"{results['rows']['fedavg']['AVG']['mean']:.2f}"
    )
    assert pages.round_value("office_paper_protocol", "fpl", "2", "97") == (
        f"{row_curve(results, 'fpl', '2', 97):.2f}"
    )


def row_curve(results: dict[str, Any], method: str, seed: str, round_: int) -> float:
    return float(results["rows"][method]["curves"][seed][round_ - 1])


def test_the_table_has_one_row_per_method_and_the_paired_column() -> None:
    table = pages.table("office_paper_protocol", "fpl,fpl-fedheal").splitlines()
    assert len(table) == 4
    assert table[0].endswith("vs FPL, per seed |")
    assert table[3].startswith("| FPL + FedHEAL | ")
    assert table[3].endswith(f"| {pages.diffs('office_paper_protocol', 'fpl-fedheal')} |")


def test_a_wrong_placeholder_is_named() -> None:
    with pytest.raises(pages.TemplateError, match="has no row 'fpl-typo'"):
        pages.render("{{ cell office_paper_protocol fpl-typo AVG }}", "page.md")
    with pytest.raises(pages.TemplateError, match="unknown placeholder kind 'cel'"):
        pages.render("{{ cel office_paper_protocol fpl AVG }}", "page.md")
    with pytest.raises(pages.TemplateError, match="does not exist"):
        pages.render("{{ table no_such_folder }}", "page.md")


def test_the_cli_reference_lists_every_command_and_setting() -> None:
    from protofl.config import RunConfig

    text = pages.cli_reference()
    for command in ("run", "compare", "report", "export", "list", "flower"):
        assert f"## protofl {command}" in text
    for name in RunConfig.__dataclass_fields__:
        if name != "algorithm_options":
            assert f"| `{name}` |" in text


def test_the_leave_one_out_table_reads_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cell(mean: float, std: float, n: int) -> dict[str, float]:
        return {"mean": mean, "std": std, "n": n}

    lodo = {
        "held_out": ["dslr", "webcam"],
        "rows": {
            "fpl": {
                "dslr": cell(40.0, 2.0, 2),
                "webcam": cell(30.0, 1.0, 2),
                "mean": cell(35.0, 1.5, 2),
                "seeds": [0, 1],
            }
        },
    }
    (tmp_path / "lodo").mkdir()
    (tmp_path / "lodo" / "results.json").write_text(json.dumps({"leave_one_domain_out": lodo}))
    monkeypatch.setattr(pages, "RESULTS", tmp_path)
    assert pages.lodo("lodo").splitlines() == [
        "| Method | DSLR | Webcam | mean | seeds |",
        "|---|---|---|---|---|",
        "| FPL | 40.00 ± 2.00 | 30.00 ± 1.00 | 35.00 ± 1.50 | 0, 1 |",
    ]
    assert pages.lodo("lodo", "fpl", "webcam") == "30.00 ± 1.00"
    with pytest.raises(pages.TemplateError, match="no leave-one-out cell"):
        pages.lodo("lodo", "fedavg")
