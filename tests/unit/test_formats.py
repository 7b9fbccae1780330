"""Unit tests of the format readers on tiny files written in every supported format."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import io
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from protofl.data.formats import (
    parse_idx,
    read_idx,
    read_mnist,
    read_npz,
    read_svhn_mat,
    read_usps_h5,
    read_usps_libsvm,
)
from protofl.data.image_folders import (
    list_image_folder,
    office_train_mask,
    read_image,
    read_image_folder,
    split_office,
)
from protofl.errors import DataError, DataNotFoundError

from format_writers import (
    color_of,
    idx_bytes,
    libsvm_text,
    write_class_folders,
    write_idx,
    write_npz,
    write_solid_image,
    write_svhn_mat,
    write_usps_bz2,
    write_usps_h5,
)

needs_h5py = pytest.mark.skipif(
    importlib.util.find_spec("h5py") is None, reason="h5py not installed (pip install protofl[h5])"
)

# ---------------------------------------------------------------- IDX (MNIST)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_images_and_labels(tmp_path: Path, suffix: str) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / f"i{suffix}", images)), images)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / f"l{suffix}", labels)), labels)


def test_parse_idx_reads_big_endian_int16() -> None:
    data = bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 2) + struct.pack(">2h", -2, 513)
    parsed = parse_idx(data, "mem")
    assert parsed.dtype == np.int16 and parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, [-2, 513])


def test_read_mnist_adds_channel_axis(tmp_path: Path) -> None:
    images = np.full((3, 28, 28), 9, dtype=np.uint8)
    labels = np.array([1, 2, 3], dtype=np.uint8)
    x, y = read_mnist(write_idx(tmp_path / "x.gz", images), write_idx(tmp_path / "y", labels))
    assert x.shape == (3, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\x00", "shorter than the 4-byte magic number"),
        (b"\x01\x02\x08\x01" + bytes(8), "bad IDX magic number 0x01020801"),
        (b"\x00\x00\x07\x01" + bytes(8), "bad IDX magic number 0x00000701"),
        (b"\x00\x00\x08\x03" + bytes(6), "IDX header truncated"),
        (idx_bytes(np.zeros((2, 3, 3), np.uint8))[:-1], "IDX size mismatch"),
        (idx_bytes(np.zeros((2,), np.uint8)) + b"\x00", "IDX size mismatch"),
        (b"\x1f\x8b" + b"garbage", "corrupt or truncated gzip"),
        (gzip.compress(idx_bytes(np.zeros((4, 4), np.uint8)))[:-6], "corrupt or truncated gzip"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match="broken-idx3-ubyte") as info:
        read_idx(path)
    assert problem in str(info.value)


def test_read_idx_size_mismatch_message_gives_sizes(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3), np.uint8))[:-4])
    with pytest.raises(DataError, match=r"\(2, 3, 3\) need 18 payload bytes; got 14"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"nope.*file not found"):
        read_idx(tmp_path / "nope")


def test_read_mnist_rejects_count_mismatch_and_swapped_files(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "x", np.zeros((3, 2, 2), np.uint8))
    labels = write_idx(tmp_path / "y", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"has 3 images but .* has 4 labels"):
        read_mnist(images, labels)
    with pytest.raises(DataError, match="expected idx3 uint8 images"):
        read_mnist(labels, images)


# ---------------------------------------------------------------- USPS


def test_read_usps_libsvm_converts_like_torchvision(tmp_path: Path) -> None:
    # Expected pixels by hand from uint8((x + 1) / 2 * 255): -1 -> 0, 1 -> 255, 0 -> 127
    # (127.5 truncated), 0.5 -> 191 (191.25); missing indices are 0 -> 127. -0.6 gives 50,
    # not 51: float32(-0.6) lies just below -0.6, and torchvision computes in float32 too.
    rows = [{1: -1.0, 2: 1.0, 3: 0.5, 256: -0.6}, {index: -1.0 for index in range(1, 257)}]
    path = write_usps_bz2(tmp_path / "usps.bz2", [10, 1], rows)
    images, labels = read_usps_libsvm(path)
    assert images.shape == (2, 16, 16, 1) and images.dtype == np.uint8
    flat = images.reshape(2, 256)
    assert flat[0, :3].tolist() == [0, 255, 191]
    assert flat[0, 255] == 50
    assert set(flat[0, 3:255].tolist()) == {127}
    assert set(flat[1].tolist()) == {0}
    np.testing.assert_array_equal(labels, [9, 0])


def test_read_usps_libsvm_accepts_uncompressed_text(tmp_path: Path) -> None:
    path = tmp_path / "usps"
    path.write_text(libsvm_text([3], [{1: 1.0}]))
    images, labels = read_usps_libsvm(path)
    assert images.reshape(-1)[0] == 255 and labels.tolist() == [2]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (bz2.compress(b"1 1:0.5\n" * 50)[:-10], "corrupt or truncated bz2"),
        (b"BZh9garbage", "corrupt or truncated bz2"),
        (bz2.compress(b""), "no samples"),
        (bz2.compress(b"1 1:0.5\n2 1-0.5\n"), "line 2: expected 'label index:value"),
        (bz2.compress(b"one 1:0.5\n"), "line 1: expected 'label index:value"),
        (bz2.compress(b"1 1 0.5\n"), "line 1: expected 'label index:value"),
        (bz2.compress(b"1 1.5:0.5\n"), "pixel indices must be whole numbers"),
        (bz2.compress(b"1 1:0.5\n2 257:0.5\n"), "line 2: pixel indices must lie in 1..256"),
        (bz2.compress(b"1 1:0.5\n2 3:1.5\n"), "line 2: pixel values must lie in [-1, 1]"),
        (bz2.compress(b"1 1:\xff\n"), "corrupt or truncated bz2"),
    ],
)
def test_read_usps_libsvm_rejects_corrupt_files(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "usps.t.bz2"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"usps\.t\.bz2") as info:
        read_usps_libsvm(path)
    assert problem in str(info.value)


@needs_h5py
def test_read_usps_h5_floors_unit_values(tmp_path: Path) -> None:
    data = np.zeros((2, 256), dtype=np.float32)
    data[0, :4] = [0.5, 1.0, 0.999, 0.002]  # floor(x*255): 127, 255, 254, 0
    target = np.array([4, 0])
    path = write_usps_h5(tmp_path / "usps.h5", (data, target), (data[:1], target[:1]))
    splits = read_usps_h5(path)
    assert splits.x_train.shape == (2, 16, 16, 1) and splits.x_test.shape == (1, 16, 16, 1)
    assert splits.x_train.reshape(2, 256)[0, :4].tolist() == [127, 255, 254, 0]
    np.testing.assert_array_equal(splits.y_train, [4, 0])
    np.testing.assert_array_equal(splits.y_test, [4])


@needs_h5py
def test_read_usps_h5_missing_dataset_lists_what_is_there(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "usps.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("train/data", data=np.zeros((1, 256)))
    with pytest.raises(DataError, match=r"usps\.h5: missing dataset 'train/target'.*train/data"):
        read_usps_h5(path)


@needs_h5py
def test_read_usps_h5_rejects_bad_values_and_non_hdf5(tmp_path: Path) -> None:
    bad = np.full((1, 256), 1.5)
    path = write_usps_h5(tmp_path / "usps.h5", (bad, np.array([1])), (bad, np.array([1])))
    with pytest.raises(DataError, match=r"usps\.h5: train/data: expected pixel values in \[0, 1\]"):
        read_usps_h5(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match=r"junk\.h5: not a readable HDF5 file"):
        read_usps_h5(junk)
    with pytest.raises(DataNotFoundError, match=r"absent\.h5: file not found"):
        read_usps_h5(tmp_path / "absent.h5")


def test_read_usps_h5_without_h5py_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    with pytest.raises(DataError, match=r"usps\.h5: .*needs h5py.*pip install 'protofl\[h5\]'"):
        read_usps_h5(tmp_path / "usps.h5")


# ---------------------------------------------------------------- SVHN


def test_read_svhn_mat_transposes_and_maps_ten_to_zero(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 9, 0])
    x, y = read_svhn_mat(write_svhn_mat(tmp_path / "test_32x32.mat", images, labels))
    assert scipy.io.loadmat(tmp_path / "test_32x32.mat")["y"].ravel().tolist() == [10, 1, 9, 10]
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def _mat_v73_header() -> bytes:
    # 116 text bytes, 8 subsystem bytes, version 0x0200 and 'IM': how v7.3 files begin.
    return b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM" + bytes(400)


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, "missing variable(s) ['y']"),
        ({"X": np.zeros((32, 32, 2), np.uint8), "y": np.ones((32, 1))}, "expected 'X' as uint8"),
        ({"X": np.zeros((32, 32, 3, 2)), "y": np.ones((2, 1))}, "expected 'X' as uint8"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))}, "'X' holds 2 images"),
    ],
)
def test_read_svhn_mat_rejects_wrong_content(
    tmp_path: Path, variables: dict[str, np.ndarray], problem: str
) -> None:
    path = tmp_path / "train_32x32.mat"
    scipy.io.savemat(path, variables)
    with pytest.raises(DataError, match=r"train_32x32\.mat") as info:
        read_svhn_mat(path)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("cut", "problem"),
    [(10, "corrupt or truncated .mat"), (200, "corrupt or truncated .mat"), (-1, "v7.3")],
)
def test_read_svhn_mat_rejects_truncated_files(tmp_path: Path, cut: int, problem: str) -> None:
    full = write_svhn_mat(tmp_path / "full.mat", np.zeros((2, 32, 32, 3), np.uint8), np.ones(2))
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(full.read_bytes()[:cut] if cut > 0 else _mat_v73_header())
    with pytest.raises(DataError, match=r"train_32x32\.mat") as info:
        read_svhn_mat(path)
    assert problem in str(info.value)


# ---------------------------------------------------------------- npz


def test_read_npz_round_trips_and_ignores_extra_keys(tmp_path: Path) -> None:
    x = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3)
    path = tmp_path / "d.npz"
    np.savez_compressed(
        path, x_train=x, y_train=np.array([1, 2]), x_test=x[:1], y_test=[3], extra=x
    )
    splits = read_npz(path)
    np.testing.assert_array_equal(splits.x_train, x)
    assert splits.y_train.tolist() == [1, 2] and splits.y_test.tolist() == [3]
    np.testing.assert_array_equal(splits.x_test, x[:1])


def test_read_npz_missing_keys_lists_found_keys(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros(1), images=np.zeros(1))
    with pytest.raises(
        DataError, match=r"d\.npz: missing key\(s\) \['y_train', 'x_test', 'y_test'\]"
    ) as info:
        read_npz(path)
    assert "found ['images', 'x_train']" in str(info.value)


def test_read_npz_rejects_pickles_and_corrupt_files(tmp_path: Path) -> None:
    pickled = tmp_path / "pickled.npz"
    ragged = np.array([np.zeros(1), np.zeros(2)], dtype=object)
    np.savez(pickled, x_train=ragged, y_train=ragged, x_test=ragged, y_test=ragged)
    with pytest.raises(DataError, match=r"pickled\.npz: not a readable \.npz file.*allow_pickle"):
        read_npz(pickled)
    good = write_npz(tmp_path / "g.npz", *(np.zeros((3, 2, 2, 1), np.uint8),) * 4)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DataError, match=r"truncated\.npz: not a readable \.npz file"):
        read_npz(truncated)
    with pytest.raises(DataNotFoundError, match=r"absent\.npz: file not found"):
        read_npz(tmp_path / "absent.npz")


# ---------------------------------------------------------------- image folders


def test_read_image_folder_orders_classes_and_files_by_name(tmp_path: Path) -> None:
    # Names sort as strings: class "b" after "a", file "10.png" before "2.png".
    for class_id, class_name, files in ((1, "b", ("2.png", "10.png")), (0, "a", ("x.png",))):
        for index, name in enumerate(files):
            write_solid_image(tmp_path / class_name / name, color_of(class_id, index))
    folder = read_image_folder(tmp_path, size=(4, 6))
    assert folder.classes == ("a", "b")
    assert [path.name for path in folder.paths] == ["x.png", "10.png", "2.png"]
    assert folder.labels.tolist() == [0, 1, 1]
    assert folder.images.shape == (3, 4, 6, 3) and folder.images.dtype == np.uint8
    for image, color in zip(
        folder.images, [color_of(0, 0), color_of(1, 1), color_of(1, 0)], strict=True
    ):
        assert (image == np.array(color, np.uint8)).all()


def test_read_image_resizes_bilinear_to_height_width(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    gradient = np.tile(np.arange(0, 240, 30, dtype=np.uint8), (6, 1))  # 6 high, 8 wide
    Image.fromarray(gradient, mode="L").save(path)
    resized = read_image(path, (3, 4))
    reference = np.asarray(
        Image.fromarray(gradient).convert("RGB").resize((4, 3), Image.Resampling.BILINEAR)
    )
    assert resized.shape == (3, 4, 3)
    np.testing.assert_array_equal(resized, reference)
    assert (resized[..., 0] == resized[..., 2]).all()  # grayscale repeated to RGB


def test_read_image_folder_reads_jpeg_and_skips_non_images(tmp_path: Path) -> None:
    write_solid_image(tmp_path / "cls" / "a.JPG", (200, 40, 90))
    (tmp_path / "cls" / "notes.txt").write_text("not an image")
    write_solid_image(tmp_path / ".ipynb_checkpoints" / "a.png", (0, 0, 0))
    folder = read_image_folder(tmp_path, size=(5, 5))
    assert folder.classes == ("cls",) and len(folder.paths) == 1
    assert np.abs(folder.images[0].astype(int) - [200, 40, 90]).max() <= 6  # JPEG is lossy


def test_read_image_folder_rejects_corrupt_and_truncated_images(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"bad\.png: unreadable image"):
        read_image_folder(tmp_path)
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, format="JPEG")
    (tmp_path / "c" / "bad.png").unlink()
    (tmp_path / "c" / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: unreadable image.*truncated"):
        read_image_folder(tmp_path)


def test_list_image_folder_rejects_empty_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="image folder not found"):
        list_image_folder(tmp_path / "absent")
    with pytest.raises(DataError, match="no class folders"):
        list_image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class: class folder without images"):
        list_image_folder(tmp_path)


def test_office_train_mask_is_i_mod_10_at_most_7() -> None:
    mask = office_train_mask(25)
    assert np.flatnonzero(~mask).tolist() == [8, 9, 18, 19]
    assert int(mask.sum()) == 21


def test_split_office_keeps_folder_order(tmp_path: Path) -> None:
    order = write_class_folders(tmp_path, [7, 5])  # 12 images: indices 8, 9 go to test
    folder = read_image_folder(tmp_path, size=(2, 2))
    splits = split_office(folder.images, folder.labels)
    assert splits.y_train.tolist() == [c for c, _ in order[:8]] + [c for c, _ in order[10:]]
    assert splits.y_test.tolist() == [order[8][0], order[9][0]]
    assert (splits.x_test[0] == np.array(color_of(*order[8]), np.uint8)).all()
    with pytest.raises(DataError, match="2 images but 3 labels"):
        split_office(folder.images[:2], folder.labels[:3])
