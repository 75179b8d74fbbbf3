"""Image classification datasets as in-memory tensors.

Every loader returns a ``Dataset`` whose inputs are float32 (N, C, H, W), normalised per channel with the
mean and standard deviation of the TRAIN split (pixels first scaled to [0, 1]); labels are int64 (N,).

Sources:
- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, no download), split once into train/test
  with a fixed seeded stratified split (25% test): 1,347 train / 450 test.
- ``fmnist``: Fashion-MNIST read from its idx ``.gz`` files: in ``root`` (or ``root/FashionMNIST/raw``,
  torchvision's layout) when a root is given, and nowhere else; without a root in
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``), then the default data root.
  Downloaded with torchvision only when asked.
- ``mnist``: MNIST idx files in ``root`` or ``root/MNIST/raw`` (without a root: the default data root); download
  via torchvision when asked.
- ``cifar10``, ``cifar100``: torchvision's pickled batches under ``root`` (default: the default data root);
  download when asked.

Nothing is ever downloaded unless ``download=True`` (config ``data.download``). The default data root is
``$SECURE_FAL_DATA`` when set, else ``./data_cache``; ``data.root`` in a config overrides it.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..plugins import PluginError, is_plugin, load_plugin
from .files import load_image_folder, load_npz

DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0

_DOWNLOAD_HINT = ("let torchvision download it into data.root (default $SECURE_FAL_DATA or ./data_cache) with "
                  "--set data.download=true")

# idx type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/ file format)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset's files are not on this machine; the message says how to get them."""


@dataclass
class Dataset:
    """An image classification dataset held in memory.

    Attributes:
        name: dataset name ('digits', 'fmnist', ...).
        x_train: float32 (N, C, H, W), normalised per channel.
        y_train: int64 (N,), labels in [0, num_classes).
        x_test: float32 (M, C, H, W), normalised with the train statistics.
        y_test: int64 (M,).
        num_classes: number of classes C.
        mean: per-channel mean of the train pixels in [0, 1] scale (length C), subtracted before scaling.
        std: per-channel standard deviation of the train pixels in [0, 1] scale (length C).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        """Height (= width) of the images in pixels."""
        return int(self.x_train.shape[2])

    def to_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: (B, C, H, W) normalised inputs -> pixels in [0, 1] scale."""
        return x * _per_channel(self.std, x) + _per_channel(self.mean, x)

    def from_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (B, C, H, W) pixels in [0, 1] scale with this dataset's statistics."""
        return (x - _per_channel(self.mean, x)) / _per_channel(self.std, x)


def _per_channel(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def default_data_root() -> Path:
    """Where downloaded datasets go when no root is given: $SECURE_FAL_DATA or ./data_cache."""
    return Path(os.environ.get("SECURE_FAL_DATA", "data_cache"))


def make_dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 num_classes: int) -> Dataset:
    """Build a Dataset from pixels in [0, 1] shaped (N, C, H, W); normalises with the train statistics."""
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    if x_train.ndim != 4 or x_test.ndim != 4 or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{name}: expected (N, C, H, W) train and test images of one shape, got "
                         f"{x_train.shape} and {x_test.shape}")
    mean = x_train.mean(axis=(0, 2, 3))
    std = x_train.std(axis=(0, 2, 3))
    std = np.where(std > 0, std, 1.0)
    shape = (1, -1, 1, 1)

    def norm(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32))

    return Dataset(name, norm(x_train), torch.as_tensor(np.asarray(y_train), dtype=torch.int64),
                   norm(x_test), torch.as_tensor(np.asarray(y_test), dtype=torch.int64), num_classes,
                   tuple(float(m) for m in mean), tuple(float(s) for s in std))


# -- idx files (MNIST, Fashion-MNIST) ---------------------------------------------------------------------

def read_idx(path: str | Path) -> np.ndarray:
    """Read one idx file (gzip-compressed when the name ends in .gz) into an array of its stored shape.

    Format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions d, then d big-endian uint32 sizes and the data in C order.
    Raises ValueError naming the file when the header is invalid or the data length does not match it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (magic bytes {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{path}: truncated idx header ({len(raw)} bytes, need {header_len})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_len != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes of data), file has "
                         f"{len(raw) - header_len}")
    return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def find_idx_dir(candidates: list[Path]) -> Path | None:
    """The first directory holding all four MNIST-style idx files (.gz or uncompressed), or None."""
    for directory in candidates:
        if all(_idx_path(directory, stem) for stem in IDX_FILES.values()):
            return directory
    return None


def load_idx_dataset(name: str, directory: str | Path, num_classes: int = 10) -> Dataset:
    """Dataset from the four idx files in ``directory`` (uint8 images (N, H, W), labels (N,))."""
    directory = Path(directory)
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = _idx_path(directory, stem)
        if path is None:
            raise DatasetNotFoundError(f"{name}: {stem}(.gz) not found in {directory}")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{name} in {directory}: {split} images {images.shape} and labels {labels.shape} "
                             "do not match (expected (N, H, W) and (N,))")
    return make_dataset(name, arrays["train_images"][:, None] / 255.0, arrays["train_labels"].astype(np.int64),
                        arrays["test_images"][:, None] / 255.0, arrays["test_labels"].astype(np.int64),
                        num_classes)


def _load_idx_family(name: str, folder: str, candidates: list[Path], root: Path | None, download: bool,
                     how_to_get: str) -> Dataset:
    directory = find_idx_dir(candidates)
    if directory is None and download:
        import torchvision.datasets as tvd

        target = root or default_data_root()
        cls = {"fmnist": tvd.FashionMNIST, "mnist": tvd.MNIST}[name]
        for train in (True, False):
            cls(str(target), train=train, download=True)
        directory = find_idx_dir([target / folder / "raw"])
    if directory is None:
        looked = ", ".join(str(c) for c in candidates)
        raise DatasetNotFoundError(f"{name}: idx files ({', '.join(IDX_FILES.values())}, .gz or not) not found "
                                   f"in any of: {looked}. {how_to_get}")
    return load_idx_dataset(name, directory)


def load_fmnist(root: str | Path | None = None, download: bool = False) -> Dataset:
    """Fashion-MNIST (60,000 train / 10,000 test, 1x28x28, 10 classes); see the module docstring."""
    root = Path(root) if root is not None else None
    candidates = ([root, root / "FashionMNIST" / "raw"] if root else
                  [DEBIAN_FMNIST_DIR, default_data_root() / "FashionMNIST" / "raw"])
    return _load_idx_family("fmnist", "FashionMNIST", candidates, root, download,
                            "Install it with `apt-get install dataset-fashion-mnist`, set data.root to a folder "
                            f"holding the files (--set data.root=DIR), or {_DOWNLOAD_HINT}.")


def load_mnist(root: str | Path | None = None, download: bool = False) -> Dataset:
    """MNIST (60,000 train / 10,000 test, 1x28x28, 10 classes); see the module docstring."""
    root = Path(root) if root is not None else None
    candidates = [root, root / "MNIST" / "raw"] if root else [default_data_root() / "MNIST" / "raw"]
    return _load_idx_family("mnist", "MNIST", candidates, root, download,
                            f"Set data.root to a folder holding the files (--set data.root=DIR), or {_DOWNLOAD_HINT}.")


# -- CIFAR (torchvision) ----------------------------------------------------------------------------------

def _load_cifar(name: str, folder: str, num_classes: int, root: str | Path | None, download: bool) -> Dataset:
    target = Path(root) if root is not None else default_data_root()
    if not (target / folder).is_dir() and not download:
        raise DatasetNotFoundError(f"{name}: folder {target / folder} not found. Set data.root to the folder that "
                                   f"holds {folder}/ (--set data.root=DIR), or {_DOWNLOAD_HINT}.")
    import torchvision.datasets as tvd

    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    splits = [cls(str(target), train=train, download=download) for train in (True, False)]
    images = [np.asarray(s.data).transpose(0, 3, 1, 2) / 255.0 for s in splits]
    labels = [np.asarray(s.targets, dtype=np.int64) for s in splits]
    return make_dataset(name, images[0], labels[0], images[1], labels[1], num_classes)


def load_cifar10(root: str | Path | None = None, download: bool = False) -> Dataset:
    """CIFAR-10 (50,000 train / 10,000 test, 3x32x32, 10 classes) via torchvision."""
    return _load_cifar("cifar10", "cifar-10-batches-py", 10, root, download)


def load_cifar100(root: str | Path | None = None, download: bool = False) -> Dataset:
    """CIFAR-100 (50,000 train / 10,000 test, 3x32x32, 100 classes) via torchvision."""
    return _load_cifar("cifar100", "cifar-100-python", 100, root, download)


# -- digits (scikit-learn, bundled) -----------------------------------------------------------------------

def load_digits(root: str | Path | None = None, download: bool = False) -> Dataset:
    """scikit-learn's 8x8 digits (1x8x8, 10 classes): 1,347 train / 450 test, fixed stratified split.

    ``root`` and ``download`` are accepted for a uniform signature and ignored: the data ships with
    scikit-learn.
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = bunch.images[:, None] / 16.0  # pixel values 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target.astype(np.int64),
                                              test_size=DIGITS_TEST_FRACTION, stratify=bunch.target,
                                              random_state=DIGITS_SPLIT_SEED)
    return make_dataset("digits", x_tr, y_tr, x_te, y_te, 10)


SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "fmnist": ((1, 28, 28), 10),
    "mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
}
"""Dataset name -> ((C, H, W) of one input, number of classes), known without loading the data."""

LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "fmnist": load_fmnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "npz": load_npz,
    "folder": load_image_folder,
}


def load_dataset(name: str, root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load a dataset by name: 'digits' (default, bundled), 'fmnist', 'mnist', 'cifar10', 'cifar100', 'npz' or
    'folder' (your files at ``root``, see ``secure_fal.data.files``), or a plug-in ``module:function``.

    A plug-in is called as ``function(root=root, download=download)`` and returns a ``Dataset`` (build one from
    pixels in [0, 1] with ``make_dataset``); its shapes are checked (``check_dataset``).

    Args:
        root: folder holding (or receiving) the files; see the module docstring for where each is searched.
        download: allow torchvision to download a missing dataset (never done otherwise).
    Raises:
        DatasetNotFoundError: the files are missing and download is False (the message says how to get them).
        PluginError: a plug-in that cannot be imported or returns an unusable dataset.
    """
    if is_plugin(name):
        data = load_plugin(name, "data.dataset")(root=root, download=download)
        check_dataset(data, f"data.dataset {name!r}")
        return data
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[name](root=root, download=download)


def check_dataset(data: object, where: str) -> None:
    """Raise PluginError (prefixed by ``where``) unless ``data`` is a ``Dataset`` of float (N, C, H, W) square
    images, train and test of one shape, int64 labels (N,) in [0, num_classes), neither split empty."""
    if not isinstance(data, Dataset):
        raise PluginError(f"{where}: returned {type(data).__name__}, expected a secure_fal.data.Dataset "
                          "(build one with secure_fal.data.make_dataset)")
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        problem = None
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            problem = "inputs and labels must be torch tensors"
        elif x.ndim != 4 or x.shape[2] != x.shape[3] or not x.is_floating_point():
            problem = f"inputs of shape {tuple(x.shape)} ({x.dtype}), expected float (N, C, H, H)"
        elif x.shape[1:] != data.x_train.shape[1:]:
            problem = f"inputs of shape {tuple(x.shape)}, the train inputs are (N, {tuple(data.x_train.shape[1:])})"
        elif y.shape != (len(x),) or y.dtype != torch.int64 or len(x) == 0:
            problem = f"labels of shape {tuple(y.shape)} ({y.dtype}), expected int64 ({len(x)},) with N >= 1"
        elif y.min() < 0 or y.max() >= data.num_classes:
            problem = f"labels must be in [0, {data.num_classes})"
        if problem:
            raise PluginError(f"{where}: {split} split: {problem}")
