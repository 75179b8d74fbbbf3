"""Dataset loaders: the idx reader on files written here, the search order, clear errors, digits."""

import gzip
import struct

import numpy as np
import pytest
import torch

from secure_fal.data import DatasetNotFoundError, load_dataset, make_dataset, read_idx
from secure_fal.data import datasets as ds_mod


def write_idx(path, array: np.ndarray, type_code: int = 0x08, compress: bool = True) -> None:
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(dtype).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)


def write_mnist_like(directory, n_train=30, n_test=10, size=6, seed=0, compress=True):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, arr in arrays.items():
        write_idx(directory / f"{stem}{suffix}", arr, compress=compress)
    return arrays


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """Hide the Debian Fashion-MNIST folder and the default data root, whatever this machine has."""
    monkeypatch.setattr(ds_mod, "DEBIAN_FMNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("SECURE_FAL_DATA", str(tmp_path / "no-default"))


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("type_code,values", [(0x08, np.arange(24).reshape(2, 3, 4)),
                                              (0x0B, np.array([-300, 0, 7])),
                                              (0x0D, np.array([[1.5, -2.25]]))])
def test_read_idx_round_trip(tmp_path, compress, type_code, values):
    path = tmp_path / ("f.idx.gz" if compress else "f.idx")
    write_idx(path, values, type_code, compress)
    out = read_idx(path)
    assert out.shape == values.shape
    np.testing.assert_array_equal(out, values)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x01\x02")
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        read_idx(short)


def test_fmnist_from_user_root(tmp_path, no_system_data):
    arrays = write_mnist_like(tmp_path / "fm")
    data = load_dataset("fmnist", root=tmp_path / "fm")
    assert data.name == "fmnist" and data.num_classes == 10
    assert data.x_train.shape == (30, 1, 6, 6) and data.x_test.shape == (10, 1, 6, 6)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    np.testing.assert_array_equal(data.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    # normalised with the train statistics; the inverse gives back the pixels / 255
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std(unbiased=False)) - 1) < 1e-4
    pixels = data.to_unit_range(data.x_test)[:, 0].numpy()
    np.testing.assert_allclose(pixels, arrays["t10k-images-idx3-ubyte"] / 255.0, atol=1e-5)


def test_fmnist_torchvision_layout_and_uncompressed(tmp_path, no_system_data):
    write_mnist_like(tmp_path / "root" / "FashionMNIST" / "raw", compress=False)
    assert load_dataset("fmnist", root=tmp_path / "root").x_train.shape == (30, 1, 6, 6)


def test_fmnist_found_in_debian_folder(tmp_path, no_system_data, monkeypatch):
    write_mnist_like(tmp_path / "debian", n_train=20)
    monkeypatch.setattr(ds_mod, "DEBIAN_FMNIST_DIR", tmp_path / "debian")
    assert len(load_dataset("fmnist").y_train) == 20


def test_missing_datasets_say_how_to_get_them(tmp_path, no_system_data):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fmnist", root=tmp_path / "empty")
    assert "--set data.download=true" in str(err.value) and str(tmp_path / "empty") in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="--set data.root=DIR"):
        load_dataset("mnist", root=tmp_path / "empty")
    for name in ("cifar10", "cifar100"):
        with pytest.raises(DatasetNotFoundError, match="--set data.download=true"):
            load_dataset(name, root=tmp_path / "empty")


def test_a_wrong_root_does_not_fall_back_to_the_system_copy(tmp_path, no_system_data, monkeypatch):
    write_mnist_like(tmp_path / "debian", n_train=20)
    monkeypatch.setattr(ds_mod, "DEBIAN_FMNIST_DIR", tmp_path / "debian")
    with pytest.raises(DatasetNotFoundError, match=f"not found in any of: {tmp_path / 'typo'},"):
        load_dataset("fmnist", root=tmp_path / "typo")


def test_incomplete_idx_folder_is_not_used(tmp_path, no_system_data):
    write_mnist_like(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError):
        load_dataset("fmnist", root=tmp_path / "fm")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="digits"):
        load_dataset("imagenet")


def test_digits_is_bundled_fixed_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.shape == (1347, 1, 8, 8) and a.x_test.shape == (450, 1, 8, 8)
    assert a.x_train.dtype == torch.float32 and a.y_test.dtype == torch.int64
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    train_share = np.bincount(a.y_train.numpy()) / len(a.y_train)
    test_share = np.bincount(a.y_test.numpy()) / len(a.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    pixels = a.to_unit_range(a.x_train)
    assert float(pixels.min()) > -1e-5 and float(pixels.max()) < 1 + 1e-5
    torch.testing.assert_close(a.from_unit_range(pixels), a.x_train)


def test_make_dataset_normalises_per_channel_with_train_statistics():
    rng = np.random.default_rng(0)
    train = rng.random((50, 3, 4, 4)) * np.array([1.0, 0.5, 0.1]).reshape(1, 3, 1, 1)
    test = rng.random((5, 3, 4, 4))
    data = make_dataset("toy", train, np.zeros(50, int), test, np.zeros(5, int), 2)
    per_channel = data.x_train.transpose(0, 1).reshape(3, -1)
    np.testing.assert_allclose(per_channel.mean(1).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(1, unbiased=False).numpy(), 1, atol=1e-4)
    np.testing.assert_allclose(data.mean, train.mean(axis=(0, 2, 3)))
    with pytest.raises(ValueError, match="C, H, W"):
        make_dataset("bad", train[:, 0], np.zeros(50, int), test, np.zeros(5, int), 2)
