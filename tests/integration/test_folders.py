"""`--benchmark folders`: any folder of domains, from tiny generated image files: the class
union and a class a domain lacks, every format and mode, broken files, the seeded split, a
given split, the image size, the content-keyed cache, and a one-round run from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from image_files import write_class_folders, write_image
from protofl import RunConfig
from protofl.cli import main
from protofl.data import image_cache
from protofl.data.folders import stratified_test_mask
from protofl.engine.loading import load_federation
from protofl.errors import ConfigError, DataError

TWO_DOMAINS = {"hospital_a": ["cat", "dog", "eel"], "hospital_b": ["cat", "dog"]}


def config(root: Path, tmp_path: Path, **changes: object) -> RunConfig:
    values: dict[str, Any] = {"benchmark": "folders", "data_dir": str(root)}
    values |= {"cache_dir": str(tmp_path / "cache"), "precision": "fp32", "threads": 1}
    return RunConfig(**(values | changes))


def test_classes_are_the_union_and_a_missing_class_is_recorded(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "data", TWO_DOMAINS, per_class=5)
    spec, federation, resolved = load_federation(config(root, tmp_path))
    assert spec.domains == ("hospital_a", "hospital_b") and spec.num_classes == 3
    assert resolved["classes"] == ["cat", "dog", "eel"]
    assert resolved["data"]["hospital_b"]["missing_classes"] == ["eel"]
    assert "missing_classes" not in resolved["data"]["hospital_a"]
    # one client per domain with all of its train split; 80/20 of 5 per class is 4/1
    assert resolved["client_class_counts"] == {"hospital_a-0": [4, 4, 4], "hospital_b-0": [4, 4, 0]}
    assert resolved["test_sizes"] == {"hospital_a": 3, "hospital_b": 2}
    assert (
        "seeded class-stratified 80/20 (dataset_seed=0)" in resolved["data"]["hospital_a"]["split"]
    )
    # the labels are the class colours: class 2 (eel) is the blue one
    test = federation.test_sets[0].data
    eel = test.inputs[test.labels == 2].float()
    assert (eel[:, 2].mean() > eel[:, 0].mean() + 50).item()


def test_the_seeded_split_is_stratified_fixed_and_seed_dependent() -> None:
    labels = np.repeat(np.arange(3), [10, 7, 2])
    mask = stratified_test_mask(labels, seed=0, domain="a")
    assert [int(mask[labels == c].sum()) for c in range(3)] == [2, 1, 0]  # round(20%) half up
    assert np.array_equal(mask, stratified_test_mask(labels, seed=0, domain="a"))
    others = [stratified_test_mask(labels, seed=s, domain="a") for s in range(1, 6)]
    assert any(not np.array_equal(mask, other) for other in others)


def test_every_format_mode_and_extension_case_becomes_rgb(tmp_path: Path) -> None:
    root = tmp_path / "data"
    cases = [
        ("a.JPG", "RGB"),
        ("b.Jpeg", "L"),
        ("c.png", "P"),
        ("d.PNG", "RGBA"),
        ("e.bmp", "RGB"),
        ("f.GIF", "P"),
        ("g.tif", "I;16"),
        ("h.TIFF", "RGB"),
    ]
    for index, (name, mode) in enumerate(cases):
        write_image(root / "d1" / "x" / name, label=index % 2, seed=index, mode=mode)
        write_image(root / "d1" / "y" / name, label=1, seed=index + 50, mode=mode)
    (root / "d1" / "x" / "notes.txt").write_text("not an image")
    _, federation, resolved = load_federation(config(root, tmp_path, image_size=8))
    assert resolved["data"]["d1"]["train"] + resolved["data"]["d1"]["test"] == 16
    images = federation.clients[0].source.inputs
    assert images.shape[1:] == (3, 8, 8)


def test_transparency_is_laid_over_white(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    pixels = image_cache.decode_image(path.read_bytes(), 4, str(path))
    assert pixels.shape == (4, 4, 3) and (pixels == 255).all()


def test_a_broken_file_is_named_or_skipped_and_counted(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "data", {"d1": ["a", "b"]}, per_class=5)
    broken = root / "d1" / "a" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: unreadable image"):
        load_federation(config(root, tmp_path))
    # a cache written by a skipping run must not hide the file from a strict run either
    _, _, resolved = load_federation(config(root, tmp_path, skip_unreadable_images=True))
    skipped = resolved["data"]["d1"]["skipped_unreadable"]
    assert skipped["count"] == 1 and "broken.jpg" in skipped["files"][0]
    assert resolved["data"]["d1"]["train"] + resolved["data"]["d1"]["test"] == 10
    with pytest.raises(DataError, match="skip_unreadable_images=true"):
        load_federation(config(root, tmp_path))


def test_a_given_split_is_used_as_is(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "data", TWO_DOMAINS, per_class=5, split=True)
    _, _, resolved = load_federation(config(root, tmp_path))
    assert resolved["test_sizes"] == {"hospital_a": 3, "hospital_b": 2}
    assert resolved["client_sizes"] == {"hospital_a-0": 12, "hospital_b-0": 8}
    assert resolved["client_domains"] == {
        "hospital_a-0": "hospital_a",
        "hospital_b-0": "hospital_b",
    }
    assert resolved["data"]["hospital_a"]["split"].startswith("given")


def test_bad_layouts_and_names_are_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_class_folders(tmp_path / "data", {"d1": ["a", "b"]}, split=True)
    (root / "d1" / "extra").mkdir()
    with pytest.raises(DataError, match="train/ and test/ next to other folders"):
        load_federation(config(root, tmp_path))
    good = write_class_folders(tmp_path / "good", {"d1": ["apple", "pear"]})
    with pytest.raises(ConfigError, match="Did you mean 'apple'"):
        load_federation(config(good, tmp_path, classes=("appel",)))
    with pytest.raises(ConfigError, match="has fixed classes"):
        load_federation(RunConfig(classes=("apple",)))
    monkeypatch.delenv("PROTOFL_DATA_DIR", raising=False)  # else it stands in for --data-dir
    with pytest.raises(ConfigError, match="needs --data-dir"):
        load_federation(RunConfig(benchmark="folders"))


def test_classes_subset_renumbers_in_sorted_order(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "data", TWO_DOMAINS)
    spec, _, resolved = load_federation(config(root, tmp_path, classes=("eel", "cat")))
    assert spec.num_classes == 2 and resolved["classes"] == ["cat", "eel"]
    assert resolved["client_class_counts"]["hospital_b-0"] == [4, 0]


def test_decoded_images_are_cached_and_a_changed_file_invalidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_class_folders(tmp_path / "data", {"d1": ["a", "b"]}, per_class=5)
    calls: list[str] = []
    real = image_cache.decode_image

    def counting(data: bytes, size: int, source: str) -> np.ndarray:
        calls.append(source)
        return real(data, size, source)

    monkeypatch.setattr(image_cache, "decode_image", counting)
    first = load_federation(config(root, tmp_path))[1]
    assert len(calls) == 10 and list((tmp_path / "cache" / "decoded").glob("*.npz"))
    calls.clear()
    again = load_federation(config(root, tmp_path))[1]
    assert calls == []  # the second run decodes nothing
    assert (again.clients[0].source.inputs == first.clients[0].source.inputs).all()
    write_image(root / "d1" / "a" / "0.jpg", label=1, tint=2, seed=99)  # new content
    changed = load_federation(config(root, tmp_path))[1]
    assert len(calls) == 10
    assert not (changed.clients[0].source.inputs == first.clients[0].source.inputs).all()
    calls.clear()
    load_federation(config(root, tmp_path, image_size=16))
    assert len(calls) == 10  # another size is another entry


@pytest.mark.slow
def test_one_round_from_the_command_line_records_the_split(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "data", TWO_DOMAINS, per_class=5)
    out = tmp_path / "run"
    args = ["run", "--benchmark", "folders", "--data-dir", str(root), "--rounds", "1"]
    args += ["--local-epochs", "1", "--model", "cnn", "--out", str(out), "--quiet"]
    args += ["--set", f"cache_dir='{tmp_path / 'cache'}'", "--set", "image_size=16"]
    assert main([*args, "--set", "threads=1", "--set", "precision='fp32'"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["image_size"] == 16
    assert saved["resolved"]["data"]["hospital_b"]["missing_classes"] == ["eel"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["per_domain_accuracy"]) == {"hospital_a", "hospital_b"}
