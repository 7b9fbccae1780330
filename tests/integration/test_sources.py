"""Tests of domain lookup in a data directory, the download rule and checksummed fetching."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protofl.data import download, sources
from protofl.data.download import RESOURCES, Resource, download_domain, fetch
from protofl.data.sources import (
    default_cache_dir,
    load_digits_domain,
    load_office_domain,
    resolve_data_dir,
)
from protofl.errors import ConfigError, DataError, DataNotFoundError, LabelError

from format_writers import (
    color_of,
    mnist_arrays,
    write_class_folders,
    write_mnist,
    write_npz,
    write_solid_image,
    write_svhn_mat,
    write_usps_bz2,
    write_usps_h5,
)

REAL_DATA = Path(__file__).parents[2].parent / "shared" / "data"
CALLER_DATA_DIR = os.environ.get(sources.DATA_DIR_ENV)  # read before the fixture clears it


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate every test from the caller's data and cache directories."""
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))


def tiny_npz(path: Path, train_label: int = 1) -> Path:
    x = np.zeros((2, 3, 3, 1), np.uint8)
    return write_npz(path, x, np.array([train_label, 2]), x[:1], np.array([3]))


# ---------------------------------------------------------------- directories


def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir(None) is None
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir("") == tmp_path / "env"  # an empty --data-dir counts as unset
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir("~/d") == tmp_path / "d"


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(sources.CACHE_DIR_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "protofl"


def test_env_var_is_used_when_no_data_dir_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tiny_npz(tmp_path / "usps.npz")
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    assert load_digits_domain("usps", None).y_train.tolist() == [1, 2]


def test_missing_data_dir_messages(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"No data directory for domain 'mnist'") as info:
        load_digits_domain("mnist", None)
    assert "--data-dir" in str(info.value) and "PROTOFL_DATA_DIR" in str(info.value)
    assert "--download" in str(info.value)
    with pytest.raises(
        DataNotFoundError, match=r"absent \(from the data_dir argument\) does not exist"
    ):
        load_office_domain("amazon", tmp_path / "absent")
    (tmp_path / "file").write_text("")
    with pytest.raises(
        DataNotFoundError, match=r"file \(from the data_dir argument\) is not a directory"
    ):
        load_digits_domain("svhn", tmp_path / "file")


def test_not_found_message_names_directory_files_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_digits_domain("mnist", tmp_path)
    message = str(info.value)
    assert f"No data for domain 'mnist' in {tmp_path}" in message
    for looked_for in (
        "mnist.npz",
        "{train,t10k}-{images,labels}-idx{3,1}-ubyte[.gz]",
        "MNIST/raw/",
    ):
        assert looked_for in message
    assert "--data-dir" in message and "PROTOFL_DATA_DIR" in message
    assert (
        f"--download (download=True) to fetch mnist into the cache ({tmp_path / 'cache'})"
        in message
    )


def test_not_found_messages_say_where_syn_and_office_come_from(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="prasunroy/synthetic-digits") as info:
        load_digits_domain("syn", tmp_path, download=True)
    assert "--download" not in str(info.value) and "syn/train/<digit>/" in str(info.value)
    with pytest.raises(DataNotFoundError, match="Office_Caltech_10/<domain>/<class>") as info:
        load_office_domain("caltech", tmp_path)
    assert "office_caltech.npz" in str(info.value) and "caltech10/<class>/*.jpg" in str(info.value)


def test_unknown_domain_names_suggest_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown Digits domain 'MNIST'.*Did you mean 'mnist'\?"):
        load_digits_domain("MNIST", tmp_path)
    with pytest.raises(ConfigError, match=r"unknown Office-Caltech-10 domain 'mnist'"):
        load_office_domain("mnist", tmp_path)


# ---------------------------------------------------------------- Digits layouts


@pytest.mark.parametrize(
    ("sub", "spelling", "gz"),
    [(".", "-", False), ("mnist", "-", True), ("MNIST/raw", ".", False), ("MNIST/raw", ".", True)],
)
def test_mnist_from_idx_layouts(tmp_path: Path, sub: str, spelling: str, gz: bool) -> None:
    write_mnist(tmp_path / sub, spelling=spelling, gz=gz)
    domain = load_digits_domain("mnist", tmp_path)
    images, labels = mnist_arrays(5, 5)  # what write_mnist wrote for the train split
    np.testing.assert_array_equal(domain.x_train[..., 0], images)
    assert domain.y_train.tolist() == labels.tolist()
    assert domain.x_test.shape == (3, 28, 28, 1) and domain.name == "mnist"


def test_npz_wins_over_standard_formats(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    tiny_npz(tmp_path / "mnist.npz", train_label=7)
    assert load_digits_domain("mnist", tmp_path).y_train.tolist() == [7, 2]


def test_usps_from_bz2(tmp_path: Path) -> None:
    write_usps_bz2(tmp_path / "a" / "usps" / "usps.bz2", [10, 2], [{1: 1.0}, {2: -1.0}])
    write_usps_bz2(tmp_path / "a" / "usps" / "usps.t.bz2", [1], [{3: 0.5}])
    domain = load_digits_domain("usps", tmp_path / "a")
    assert domain.y_train.tolist() == [9, 1] and domain.y_test.tolist() == [0]
    assert domain.x_train.shape == (2, 16, 16, 1) and domain.x_test.reshape(-1)[2] == 191


@pytest.mark.skipif(importlib.util.find_spec("h5py") is None, reason="h5py not installed")
def test_usps_from_h5(tmp_path: Path) -> None:
    data = np.full((2, 256), 0.5, np.float32)
    write_usps_h5(tmp_path / "b" / "usps.h5", (data, np.array([3, 4])), (data[:1], np.array([5])))
    domain = load_digits_domain("usps", tmp_path / "b")
    assert domain.y_train.tolist() == [3, 4] and set(domain.x_train.ravel().tolist()) == {127}


def test_label_errors_name_the_file(tmp_path: Path) -> None:
    x = np.zeros((2, 3, 3, 1), np.uint8)
    write_npz(tmp_path / "usps.npz", x, np.array([1, 10]), x[:1], np.array([0]))
    with pytest.raises(
        LabelError, match=r"usps\.npz: usps\.y_train: expected class ids in \[0, 10\)"
    ):
        load_digits_domain("usps", tmp_path)


def test_svhn_from_mat(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_svhn_mat(tmp_path / "svhn" / "train_32x32.mat", images, np.array([0, 5, 9]))
    write_svhn_mat(tmp_path / "svhn" / "test_32x32.mat", images[:2], np.array([1, 0]))
    domain = load_digits_domain("svhn", tmp_path)
    np.testing.assert_array_equal(domain.x_train, images)
    assert domain.y_train.tolist() == [0, 5, 9] and domain.y_test.tolist() == [1, 0]


def test_syn_from_folders(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "syn" / "train", [2] * 10)
    write_class_folders(tmp_path / "syn" / "val", [1] * 10)
    domain = load_digits_domain("syn", tmp_path)
    assert domain.x_train.shape == (20, 32, 32, 3) and domain.x_test.shape == (10, 32, 32, 3)
    assert domain.y_train.tolist() == [c for c in range(10) for _ in range(2)]
    assert (domain.x_test[4] == np.array(color_of(4, 0), np.uint8)).all()


def test_syn_rejects_mismatched_class_folders(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "syn" / "train", [1] * 10)
    write_class_folders(tmp_path / "syn" / "val", [1] * 9)
    with pytest.raises(DataError, match=r"val: expected 10 class folders; got 9"):
        load_digits_domain("syn", tmp_path)
    write_solid_image(tmp_path / "syn" / "val" / "other" / "x.png", (0, 0, 0))
    with pytest.raises(DataError, match="have different class folders"):
        load_digits_domain("syn", tmp_path)


def test_syn_sample_is_not_picked_up_silently(tmp_path: Path) -> None:
    tiny_npz(tmp_path / sources.SYN_SAMPLE_NPZ)
    with pytest.raises(DataNotFoundError, match=r"syn_sample_prasunroy\.npz is a 60-image sample"):
        load_digits_domain("syn", tmp_path)
    (tmp_path / "syn.npz").write_bytes((tmp_path / sources.SYN_SAMPLE_NPZ).read_bytes())
    assert load_digits_domain("syn", tmp_path).x_train.shape == (2, 3, 3, 1)


# ---------------------------------------------------------------- Office-Caltech-10


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("amazon", "Office_Caltech_10/amazon"),
        ("caltech", "Office_Caltech_10/caltech10"),
        ("webcam", "office_caltech_10/webcam"),
        ("dslr", "dslr"),
    ],
)
def test_office_from_folders_uses_the_80_20_rule(tmp_path: Path, name: str, folder: str) -> None:
    order = write_class_folders(tmp_path / folder, [3, 1, 1, 1, 2, 1, 1, 1, 1, 1])  # 13 images
    domain = load_office_domain(name, tmp_path)
    test_positions = [8, 9]  # i % 10 > 7 among 13 samples in (class, file name) order
    assert domain.y_test.tolist() == [order[i][0] for i in test_positions]
    train_positions = [i for i in range(13) if i not in test_positions]
    assert domain.y_train.tolist() == [order[i][0] for i in train_positions]
    assert domain.x_train.shape == (11, 32, 32, 3)
    assert (domain.x_test[1] == np.array(color_of(*order[9]), np.uint8)).all()


def test_office_npz_wins_and_wrong_class_count_is_refused(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "Office_Caltech_10" / "amazon", [1] * 9)
    with pytest.raises(DataError, match="amazon: expected 10 class folders; got 9"):
        load_office_domain("amazon", tmp_path)
    tiny_npz(tmp_path / "office_amazon.npz", train_label=4)
    assert load_office_domain("amazon", tmp_path).y_train.tolist() == [4, 2]


# ---------------------------------------------------------------- downloads only when asked


def _fake_download(calls: list[tuple[str, Path]]) -> Any:
    def fake(name: str, directory: Path) -> Path:
        calls.append((name, Path(directory)))
        write_mnist(Path(directory), gz=True)
        return Path(directory)

    return fake


def test_download_only_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, Path]] = []
    monkeypatch.setattr(sources, "download_domain", _fake_download(calls))
    with pytest.raises(DataNotFoundError):
        load_digits_domain("mnist", tmp_path)
    assert calls == []
    domain = load_digits_domain("mnist", tmp_path, download=True, cache_dir=tmp_path / "c")
    assert calls == [("mnist", tmp_path / "c" / "mnist")] and domain.x_train.shape[0] == 5
    domain = load_digits_domain("mnist", None, download=True)
    assert calls[-1] == ("mnist", tmp_path / "cache" / "mnist")


def test_data_dir_wins_over_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, Path]] = []
    monkeypatch.setattr(sources, "download_domain", _fake_download(calls))
    tiny_npz(tmp_path / "mnist.npz")
    load_digits_domain("mnist", tmp_path, download=True)
    assert calls == []


# ---------------------------------------------------------------- fetch


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_fetch_from_file_url_verifies_and_keeps_good_files(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload" * 1000)
    dest = tmp_path / "out" / "file.bin"
    assert fetch([source.as_uri()], dest, _md5(source.read_bytes())) == dest
    assert dest.read_bytes() == source.read_bytes()

    def refuse(url: str) -> Any:
        raise AssertionError("a verified file must not be downloaded again")

    fetch([source.as_uri()], dest, _md5(source.read_bytes()), opener=refuse)


def test_fetch_checksum_mismatch_deletes_and_raises(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"tampered")
    out = tmp_path / "out"
    with pytest.raises(
        DataError, match=r"(?s)could not download file\.bin.*checksum mismatch: expected MD5 0{32}"
    ):
        fetch([source.as_uri()], out / "file.bin", "0" * 32)
    assert _leftovers(out) == []


def test_fetch_tries_mirrors_in_order(tmp_path: Path) -> None:
    tried: list[str] = []

    def opener(url: str) -> Any:
        tried.append(url)
        if url == "https://down.example/f":
            raise urllib.error.URLError("no route")
        return io.BytesIO(b"data")

    fetch(
        ["https://down.example/f", "https://up.example/f"],
        tmp_path / "f",
        _md5(b"data"),
        opener=opener,
    )
    assert tried == ["https://down.example/f", "https://up.example/f"]
    assert (tmp_path / "f").read_bytes() == b"data"


def test_fetch_all_mirrors_failing_leaves_nothing(tmp_path: Path) -> None:
    class Broken:
        def __enter__(self) -> Broken:
            return self

        def __exit__(self, *args: object) -> None:
            return None

        def read(self, size: int) -> bytes:
            raise ConnectionResetError("reset mid-way")

    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        fetch(
            ["https://a.example/x", "https://b.example/x"],
            out / "x",
            "0" * 32,
            opener=lambda url: Broken(),
        )
    message = str(info.value)
    assert "https://a.example/x: ConnectionResetError: reset mid-way" in message
    assert (
        "https://b.example/x" in message and f"download the file yourself to {out / 'x'}" in message
    )
    assert _leftovers(out) == []


def test_fetch_needs_a_url_and_download_domain_knows_its_domains(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no URL given"):
        fetch([], tmp_path / "x", "0" * 32)
    with pytest.raises(ConfigError, match=r"domain 'syn' cannot be downloaded"):
        download_domain("syn", tmp_path)


def test_download_domain_fetches_every_resource(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    payloads = {"usps.bz2": b"train", "usps.t.bz2": b"test"}
    fake = (Resource(name, (f"https://x/{name}",), _md5(data)) for name, data in payloads.items())
    monkeypatch.setitem(download.RESOURCES, "usps", tuple(fake))
    download_domain(
        "usps", tmp_path / "c", opener=lambda url: io.BytesIO(payloads[url.rsplit("/", 1)[1]])
    )
    assert _leftovers(tmp_path / "c") == ["usps.bz2", "usps.t.bz2"]


def test_resources_are_well_formed() -> None:
    assert set(RESOURCES) == {"mnist", "usps", "svhn"}
    for resources in RESOURCES.values():
        for resource in resources:
            assert len(resource.md5) == 32 and int(resource.md5, 16) >= 0
            assert all(url.endswith("/" + resource.filename) for url in resource.urls)
    assert (
        RESOURCES["mnist"][0].urls[0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")
    )


# ---------------------------------------------------------------- real files


@pytest.mark.realdata
def test_real_data_shapes_and_counts() -> None:
    directory = Path(CALLER_DATA_DIR or REAL_DATA)
    needed = ["mnist.npz", "usps.npz", *(f"office_{d}.npz" for d in sources.OFFICE_DOMAINS)]
    missing = [name for name in needed if not (directory / name).is_file()]
    if missing:
        pytest.skip(
            f"real benchmark files {missing} not in {directory}; set PROTOFL_DATA_DIR to the "
            "folder holding them (see shared/data/README.md)"
        )
    expected = {"mnist": (60000, 10000, (28, 28, 1)), "usps": (7291, 2007, (16, 16, 1))}
    for name, (train, test, shape) in expected.items():
        domain = load_digits_domain(name, directory)
        assert domain.x_train.shape == (train, *shape) and domain.x_test.shape == (test, *shape)
    mnist = load_digits_domain("mnist", directory)
    assert np.bincount(mnist.y_test.numpy()).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    office = {"amazon": (768, 190), "caltech": (899, 224), "dslr": (127, 30), "webcam": (237, 58)}
    for name, (train, test) in office.items():
        domain = load_office_domain(name, directory)
        assert domain.x_train.shape == (train, 32, 32, 3) and domain.x_test.shape == (
            test,
            32,
            32,
            3,
        )
    if (directory / sources.SYN_SAMPLE_NPZ).is_file() and not (directory / "syn.npz").exists():
        with pytest.raises(DataNotFoundError, match="60-image sample"):
            load_digits_domain("syn", directory)
