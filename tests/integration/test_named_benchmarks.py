"""PACS, Office-Home and DomainNet in their official layouts, on tiny generated folders: the
split-file parsers, the layouts, the checksummed download from a local HTTP server (no real
network), the errors that say where to get the data, and one round of each benchmark."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from image_files import write_image
from protofl import RunConfig, run
from protofl.data import archives
from protofl.data.archives import Archive
from protofl.data.named_folders import check_labels, parse_split_file
from protofl.engine.loading import load_federation
from protofl.errors import ConfigError, DataError, DataNotFoundError

PACS = ("photo", "art_painting", "cartoon", "sketch")
PACS_CLASSES = ("dog", "horse")  # two of the seven, as the tests need only their layout


def fast(**changes: object) -> dict[str, Any]:
    """Settings for a one-round run on tiny images."""
    values: dict[str, Any] = {"rounds": 1, "local_epochs": 1, "model": "cnn", "image_size": 16}
    values |= {"precision": "fp32", "threads": 1, "client_fraction": 1.0}
    return values | changes


def write_pacs(root: Path, split_files: bool = True) -> Path:
    """kfold/<domain>/<class>/pic_<i>.jpg, 5 per class, and the official split files:
    train 4 per class, crossval 1, test the whole domain; labels 1-based (dog 1, ...)."""
    for tint, domain in enumerate(PACS):
        lines: dict[str, list[str]] = {"train": [], "crossval": [], "test": []}
        for label, name in enumerate(PACS_CLASSES):
            for i in range(5):
                relative = f"{domain}/{name}/pic_{i:03d}.jpg"
                write_image(root / "kfold" / relative, label, tint, seed=i + 10 * label)
                entry = f"{relative} {label + 1}"
                lines["crossval" if i == 4 else "train"].append(entry)
                lines["test"].append(entry)
        for part, entries in lines.items():
            if split_files:
                (root / f"{domain}_{part}_kfold.txt").write_text("\n".join(entries) + "\n")
    return root


def write_domainnet(root: Path, domains: tuple[str, ...], classes: tuple[str, ...]) -> Path:
    """<domain>/<class>/<domain>_<i>.jpg and <domain>_{train,test}.txt (labels 0-based)."""
    for tint, domain in enumerate(domains):
        lines: dict[str, list[str]] = {"train": [], "test": []}
        for label, name in enumerate(classes):
            for i in range(4):
                relative = f"{domain}/{name}/{domain}_{i}.jpg"
                write_image(root / relative, label, tint, seed=i + 10 * label)
                lines["test" if i == 3 else "train"].append(f"{relative} {label}")
        for part, entries in lines.items():
            (root / f"{domain}_{part}.txt").write_text("\n".join(entries) + "\n")
    return root


def test_split_files_parse_paths_with_spaces_and_name_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Real World/Mug/00001.jpg 3\n\nReal World/Pen/00002.jpg 4\n")
    entries = parse_split_file(good)
    assert [(e.path, e.label, e.line) for e in entries] == [
        ("Real World/Mug/00001.jpg", 3, 1),
        ("Real World/Pen/00002.jpg", 4, 3),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("a/b/c.jpg 1\na/b/d.jpg one\n")
    with pytest.raises(DataError, match=r"bad\.txt, line 2: expected"):
        parse_split_file(bad)
    clash = tmp_path / "clash.txt"
    clash.write_text("p/dog/1.jpg 1\np/dog/2.jpg 2\n")
    with pytest.raises(DataError, match=r"clash\.txt, line 2: class folder 'dog'"):
        check_labels(parse_split_file(clash), clash)


def test_pacs_uses_train_and_the_crossval_part_of_the_official_files(tmp_path: Path) -> None:
    root = write_pacs(tmp_path / "pacs")
    config = RunConfig(benchmark="pacs", data_dir=str(root), cache_dir=str(tmp_path / "c"))
    spec, _, resolved = load_federation(config)
    assert spec.domains == PACS and resolved["classes"] == ["dog", "horse"]
    assert resolved["clients_per_domain"] == {
        "photo": 2,
        "art_painting": 3,
        "cartoon": 2,
        "sketch": 3,
    }
    assert resolved["test_sizes"] == dict.fromkeys(PACS, 2)  # the crossval image of each class
    assert resolved["data"]["photo"]["train"] == 8
    assert "official split files" in resolved["data"]["photo"]["split"]


def test_pacs_without_split_files_is_split_80_20(tmp_path: Path) -> None:
    root = write_pacs(tmp_path / "pacs", split_files=False)
    config = RunConfig(benchmark="pacs", data_dir=str(root), cache_dir=str(tmp_path / "c"))
    _, _, resolved = load_federation(config)
    assert resolved["data"]["sketch"]["split"].startswith("seeded class-stratified 80/20")
    assert resolved["test_sizes"] == dict.fromkeys(PACS, 2)


def test_office_home_finds_real_world_and_domainnet_keeps_a_class_subset(tmp_path: Path) -> None:
    home = tmp_path / "home" / "OfficeHomeDataset_10072016"
    for tint, folder in enumerate(("Art", "Clipart", "Product", "Real World")):
        for label, name in enumerate(("Mug", "Pen", "Radio")):
            for i in range(5):
                write_image(home / folder / name / f"{i:05d}.jpg", label, tint, seed=i)
    config = RunConfig(
        benchmark="office-home", data_dir=str(tmp_path / "home"), cache_dir=str(tmp_path / "c")
    )
    _, _, resolved = load_federation(config)
    assert resolved["domains"] == ["art", "clipart", "product", "real_world"]
    assert resolved["test_sizes"]["real_world"] == 3
    net = write_domainnet(tmp_path / "dn", ("clipart", "sketch"), ("bird", "tiger", "zebra"))
    subset = RunConfig(
        benchmark="domainnet",
        data_dir=str(net),
        domains=("clipart", "sketch"),
        classes=("zebra", "bird"),
        cache_dir=str(tmp_path / "c"),
    )
    spec, _, resolved = load_federation(subset)
    assert spec.num_classes == 2 and resolved["classes"] == ["bird", "zebra"]
    assert resolved["test_sizes"] == {"clipart": 2, "sketch": 2}
    assert resolved["client_sizes"] == {"clipart-0": 6, "sketch-0": 6}


def test_a_subset_of_domains_numbers_classes_as_all_domains_do(tmp_path: Path) -> None:
    root = write_domainnet(tmp_path / "dn", ("clipart",), ("bird", "tiger"))
    write_domainnet(root, ("sketch",), ("bird", "zebra"))
    config = RunConfig(
        benchmark="domainnet", data_dir=str(root), domains=("sketch",), cache_dir=str(tmp_path)
    )
    spec, _, resolved = load_federation(config)
    assert resolved["classes"] == ["bird", "tiger", "zebra"] and spec.num_classes == 3
    assert resolved["data"]["sketch"]["missing_classes"] == ["tiger"]
    assert resolved["client_class_counts"] == {"sketch-0": [3, 0, 3]}


def test_missing_data_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"domaingeneralization\.github\.io"):
        load_federation(RunConfig(benchmark="pacs", data_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"hemanthdv\.org"):
        load_federation(RunConfig(benchmark="office-home", download=True, data_dir=str(tmp_path)))
    write_image(tmp_path / "clipart" / "bird" / "a.jpg")
    with pytest.raises(DataNotFoundError, match="--download"):
        load_federation(RunConfig(benchmark="domainnet", data_dir=str(tmp_path)))


class _Server:
    """A static HTTP server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

            def log_message(self, format: str, *args: object) -> None:
                requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    served = tmp_path / "served"
    served.mkdir()
    running = _Server(served)
    yield running
    running.httpd.shutdown()


def _publish(server: _Server, tmp_path: Path, domains: tuple[str, ...]) -> dict[str, Any]:
    """Zip a generated DomainNet per domain, serve zips and split files, and return the
    download table pointing at them with their real SHA-256."""
    source = write_domainnet(tmp_path / "source", domains, ("bird", "zebra"))
    served = server.folder
    table = {}
    for domain in domains:
        with zipfile.ZipFile(served / f"{domain}.zip", "w") as archive:
            for path in sorted((source / domain).rglob("*.jpg")):
                archive.write(path, path.relative_to(source).as_posix())
        files = [f"{domain}.zip", f"{domain}_train.txt", f"{domain}_test.txt"]
        for name in files[1:]:
            (served / name).write_bytes((source / name).read_bytes())
        table[domain] = tuple(
            Archive(name, server.url + name, _sha256(served / name), unpack=name.endswith(".zip"))
            for name in files
        )
    return table


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_the_checksum_unpacks_and_runs(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    domains = ("clipart", "sketch")
    table = _publish(server, tmp_path, domains)
    monkeypatch.setitem(archives.DOWNLOADS, "domainnet", table)
    root, cache = tmp_path / "domainnet", tmp_path / "cache"
    config = RunConfig(
        benchmark="domainnet",
        domains=domains,
        data_dir=str(root),
        download=True,
        cache_dir=str(cache),
        **fast(),
    )
    _, _, resolved = load_federation(config)
    assert resolved["test_sizes"] == {"clipart": 2, "sketch": 2}
    assert (root / "clipart" / "bird" / "clipart_0.jpg").is_file()
    assert len(server.requests) == 6
    load_federation(config)  # verified files are kept, nothing fetched again
    assert len(server.requests) == 6
    wrong = {
        d: (Archive(e[0].filename, e[0].url, "0" * 64, True), *e[1:]) for d, e in table.items()
    }
    monkeypatch.setitem(archives.DOWNLOADS, "domainnet", wrong)
    with pytest.raises(DataError, match="checksum mismatch: expected SHA256 0000"):
        load_federation(dataclasses.replace(config, cache_dir=str(tmp_path / "other")))
    assert not list((tmp_path / "other" / "downloads" / "domainnet").glob("*.zip"))


def test_a_zip_member_outside_the_folder_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../outside.txt", "no")
    with pytest.raises(DataError, match="outside"):
        archives.unpack_zip(evil, tmp_path / "root", "x")
    assert not (tmp_path / "outside.txt").exists()


@pytest.mark.parametrize("benchmark", ["pacs", "office-home", "domainnet", "folders"])
def test_each_folder_benchmark_runs_a_round(benchmark: str, tmp_path: Path) -> None:
    if benchmark == "pacs":
        root = write_pacs(tmp_path / "data")
        domains: tuple[str, ...] = PACS
    elif benchmark == "office-home":
        domains = ("art", "clipart", "product", "real_world")
        for tint, folder in enumerate(("Art", "Clipart", "Product", "Real World")):
            for label, name in enumerate(("Mug", "Pen")):
                for i in range(5):
                    write_image(tmp_path / "data" / folder / name / f"{i}.jpg", label, tint, i)
        root = tmp_path / "data"
    else:
        domains = ("clipart", "sketch")
        root = write_domainnet(tmp_path / "data", domains, ("bird", "zebra"))
    allocation = dict.fromkeys(domains, 1)
    config = RunConfig(
        benchmark=benchmark,
        data_dir=str(root),
        cache_dir=str(tmp_path / "cache"),
        domains=() if benchmark == "folders" else domains,
        **fast(clients_per_domain={} if benchmark == "folders" else allocation),
    )
    result = run(config, write=False)
    assert len(result.history) == 1
    assert set(result.summary["per_domain_accuracy"]) >= set(domains[:2])
