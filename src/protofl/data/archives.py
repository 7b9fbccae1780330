"""Downloads of the folder benchmarks that have an official direct URL and a published
checksum: DomainNet's per-domain zip files and its official split files.

Checksums are SHA-256 values as published by TensorFlow Datasets
(``tensorflow/datasets``, ``tensorflow_datasets/image_classification/domainnet/checksums.tsv``
at commit 90b66237ad09c9e5b9b1bc61b646db7b1fb0713c, the cleaned DomainNet release); they
were not re-verified by a download here. PACS and Office-Home are distributed through
Google Drive pages, not direct URLs with a checksum: ``--download`` refuses them and says
where to get them and how to lay them out. A zip is unpacked only after its checksum
matches, member by member, refusing any member that would land outside the data folder.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from protofl.data.download import Opener, fetch
from protofl.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """One file to download: its URL, its published SHA-256, and whether to unzip it."""

    filename: str
    url: str
    sha256: str
    unpack: bool = False


_DOMAINNET = "http://csr.bu.edu/ftp/visda/2019/multi-source/"
_DOMAINNET_SHA256 = {  # TFDS checksums.tsv (see the module docstring)
    "clipart.zip": "f8f248a3e8bbc9868c523ae24e6601b4c2ad102afc60c0efeb4f3255df22354d",
    "infograph.zip": "891e14f476317e97b6f06d6498c11d0a5b8d0c8b57210765ed9beb072da611fa",
    "painting.zip": "fa47e6d405503ea0286cabd767f176bd30e988b63ddd7b9db16cf030c9770015",
    "quickdraw.zip": "9f37df2a8c3733703dbb35ad9964202a65f675ca30137756457537536b485d84",
    "real.zip": "d7fe010b430c5b510f85d657d38c4a1924822695fabea4fef57bd00dba251d63",
    "sketch.zip": "23a7dbae7016b343e934399beaa8a68728fb5e570ebe2c71df9b75cf91c499fc",
    "clipart_train.txt": "affdadf5f95a7583e6b98030a3d35007e2613ee4dd942393c5a705ec2b429312",
    "clipart_test.txt": "62c8e36aaba1c41ad9e249099739707220a44c08f167b37ef420f34a31628a6b",
    "infograph_train.txt": "36b44cbd41a2915e0dc73b4f4be8862a6f3c220f93c8d63fb2439beeae3aefda",
    "infograph_test.txt": "413cfa54ac92e7e6b242f4f09fbd9c8ace85c4deaf3cb6c81ff6b68264460136",
    "painting_train.txt": "f1da38d50a702fddf1329f85bc607d7a2abcae7e6aec75e1fd49cc1bd340d47b",
    "painting_test.txt": "11472b13b5188e09f06918b12eebb660588c97a20e43e268d9b02e3e37eb8f97",
    "quickdraw_train.txt": "3a5edd3bc215772010eebc87f158707703dd7e48091d13b816af81326a9d1c0f",
    "quickdraw_test.txt": "2a00a60650a453c65c356da748fec54084a197272137c440e7d52d08947357bf",
    "real_train.txt": "19d483256d24aef19e581b65eda8333fd918aef3eb733fe499ff384120e3a289",
    "real_test.txt": "2b3f75bcde309aeb5931292084b2162e936b5f189e3bb1ad716f0f74c460864c",
    "sketch_train.txt": "72f4bc6afa5702a1ccba800d0053c1427de87439dfaf246dbc9a2e71abfec54f",
    "sketch_test.txt": "3fb48fca18c507c4321f007c3f62b308ec232ff6928cbfe2af64e76ec366e840",
}
# clipart and painting live under groundtruth/ (the cleaned release); the others do not
_DOMAINNET_ZIP_DIRS = {"clipart": "groundtruth/", "painting": "groundtruth/"}


def _domainnet(domain: str) -> tuple[Archive, ...]:
    zip_name = f"{domain}.zip"
    zip_url = _DOMAINNET + _DOMAINNET_ZIP_DIRS.get(domain, "") + zip_name
    splits = tuple(
        Archive(name, f"{_DOMAINNET}domainnet/txt/{name}", _DOMAINNET_SHA256[name])
        for name in (f"{domain}_train.txt", f"{domain}_test.txt")
    )
    return (Archive(zip_name, zip_url, _DOMAINNET_SHA256[zip_name], unpack=True), *splits)


DOWNLOADS: dict[str, dict[str, tuple[Archive, ...]]] = {
    "domainnet": {
        d: _domainnet(d)
        for d in ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
    },
}

# Where to get the benchmarks that cannot be downloaded, and how to lay them out.
WHERE_TO_GET = {
    "pacs": (
        "PACS (Li et al., ICCV 2017) has no direct download with a published checksum: get it "
        "from the authors' page (https://domaingeneralization.github.io/, Google Drive "
        "'PACS' folder) and unpack it so that DIR/kfold/<domain>/<class>/<image> (domains "
        "photo, art_painting, cartoon, sketch) with the official split files "
        "<domain>_{train,crossval,test}_kfold.txt in DIR or DIR/splits/; then pass --data-dir DIR."
    ),
    "office-home": (
        "Office-Home (Venkateswara et al., CVPR 2017) has no direct download with a published "
        "checksum: get OfficeHomeDataset_10072016.zip from https://www.hemanthdv.org/"
        "officeHomeDataset.html (Google Drive) and unpack it so that "
        "DIR/OfficeHomeDataset_10072016/{Art,Clipart,Product,Real World}/<class>/<image>; "
        "then pass --data-dir DIR."
    ),
}


def download_benchmark(
    benchmark: str,
    domains: Sequence[str],
    root: Path,
    downloads: Path,
    *,
    opener: Opener | None = None,
) -> None:
    """Fetch (checksummed) the files of ``domains`` into ``downloads``; unzip into ``root``
    and copy split files there, so ``root`` is the benchmark's official layout."""
    if benchmark not in DOWNLOADS:
        raise ConfigError(
            f"{benchmark} cannot be downloaded. "
            + WHERE_TO_GET.get(benchmark, "Get the files yourself and pass --data-dir.")
        )
    table = DOWNLOADS[benchmark]
    through = {} if opener is None else {"opener": opener}  # None: fetch's urllib opener
    for domain in domains:
        for archive in table[domain]:
            path = fetch(
                [archive.url],
                downloads / archive.filename,
                archive.sha256,
                algorithm="sha256",
                **through,
            )
            if archive.unpack:
                unpack_zip(path, root, archive.sha256)
            elif not (root / archive.filename).is_file():
                root.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, root / archive.filename)


def unpack_zip(path: Path, root: Path, sha256: str) -> None:
    """Unzip ``path`` into ``root`` once (a marker records the archive's checksum)."""
    marker = root / f".{path.name}.unpacked"
    if marker.is_file() and marker.read_text().strip() == sha256:
        return
    logger.info("unpacking %s into %s", path, root)
    root.mkdir(parents=True, exist_ok=True)
    top = root.resolve()
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                target = (root / member.filename).resolve()
                if top != target and top not in target.parents:
                    raise DataError(
                        f"{path}: member {member.filename!r} would be written outside {root}; "
                        "refusing to unpack this archive."
                    )
                archive.extract(member, root)
    except zipfile.BadZipFile as err:
        raise DataError(f"{path}: not a readable zip file ({err}). Delete it and retry.") from err
    marker.write_text(sha256)
