"""Datasets from your own files: an ``.npz`` of arrays, or a folder of images per class.

- ``npz`` (config ``data.dataset = "npz"``, ``data.root = "path/to/data.npz"``): arrays ``x_train``, ``y_train``,
  ``x_test``, ``y_test`` (optional ``num_classes``, default max label + 1). Images (N, H, W) or (N, C, H, W),
  square; uint8 pixels are divided by 255, float pixels must already be in [0, 1]. Labels are integers in
  [0, num_classes).
- ``folder`` (``data.dataset = "folder"``, ``data.root = "path/to/folder"``): ``train/<class id>/*`` and
  ``test/<class id>/*`` image files (PNG, JPEG, anything Pillow reads), class ids being the integer labels, all
  images of one size and channel count.

Both are normalised per channel with the train statistics (``make_dataset``), as the built-in datasets are.
``read_image_folder`` reads one ``<class id>/*`` folder; a Flower node reads its own image folder with it too
(``secure_fal.flower.fal.node_data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    from .datasets import Dataset


class DatasetFormatError(UserError, ValueError):
    """Dataset files are there but do not hold what they should (the message names the file and the problem)."""


def read_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels float64 (n, C, H, W) in [0, 1], labels int64 (n,)) of ``root/<class id>/*``, in sorted order."""
    from PIL import Image

    xs, ys = [], []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name):
        if not folder.name.isdigit():
            raise DatasetFormatError(f"{root}: sub-folder {folder.name!r} is not an integer class id")
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            with Image.open(file) as img:
                pixels = np.asarray(img, dtype=np.float64)
            xs.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
            ys.append(int(folder.name))
    if not xs:
        raise DatasetFormatError(f"{root}: no images in <class id>/ sub-folders")
    try:
        x = np.stack(xs) / 255.0
    except ValueError:
        raise DatasetFormatError(f"{root}: images of different sizes or channel counts") from None
    return x, np.asarray(ys, dtype=np.int64)


def _root(name: str, root: str | Path | None) -> Path:
    from .datasets import DatasetNotFoundError

    if root is None:
        raise DatasetNotFoundError(f"{name}: set data.root to the {'.npz file' if name == 'npz' else 'folder'} "
                                   "(--set data.root=PATH)")
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"{name}: data.root {str(path)!r} does not exist")
    return path


def _pixels(where: str, images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float64 pixels in [0, 1] from (N, H, W) or (N, C, H, W), uint8 or float."""
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DatasetFormatError(f"{where}: images of shape {images.shape}, expected (N, H, W) or (N, C, H, W)")
    if images.dtype == np.uint8:
        return images / 255.0
    images = images.astype(np.float64)
    if images.size and (images.min() < 0 or images.max() > 1):
        raise DatasetFormatError(f"{where}: float pixels must be in [0, 1] (or give uint8 pixels)")
    return images


def load_npz(root: str | Path | None = None, download: bool = False) -> Dataset:
    """The ``npz`` dataset at ``root`` (see the module docstring); ``download`` is ignored."""
    from .datasets import make_dataset

    path = _root("npz", root)
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            num_classes = int(f["num_classes"]) if "num_classes" in f else None
    except KeyError as exc:
        raise DatasetFormatError(f"{path}: missing array {exc}; expected x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: not an .npz file ({exc})") from None
    x_train, x_test = (_pixels(f"{path} {k}", arrays[k]) for k in ("x_train", "x_test"))
    y_train, y_test = (np.asarray(arrays[k]).astype(np.int64) for k in ("y_train", "y_test"))
    if num_classes is None:
        num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return make_dataset("npz", x_train, y_train, x_test, y_test, num_classes)


def load_image_folder(root: str | Path | None = None, download: bool = False) -> Dataset:
    """The ``folder`` dataset at ``root`` (see the module docstring); ``download`` is ignored."""
    from .datasets import DatasetNotFoundError, make_dataset

    path = _root("folder", root)
    missing = [s for s in ("train", "test") if not (path / s).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"folder: {path} has no {' and no '.join(missing)} sub-folder (expected "
                                   "train/<class id>/* and test/<class id>/*)")
    (x_train, y_train), (x_test, y_test) = (read_image_folder(path / s) for s in ("train", "test"))
    return make_dataset("folder", x_train, y_train, x_test, y_test, int(max(y_train.max(), y_test.max())) + 1)
