"""A FAL client's own data on its SuperNode: from its node config, or its part of the simulated split, cached.

Where the data comes from (node config of ``flower-supernode --node-config``):

- ``data`` unset (the default, used by the loopback tests): the client's pool of the simulated split, computed as
  the in-process runner does (``experiment.setup.build_pools``: dataset, long tail, split, corruption) and keeping
  only this client's rows. The first message of a run computes it; the rows are then kept in the node-local cache
  (below), so later messages (each a fresh ClientApp process in the deployment engine) load them in milliseconds.
- ``data = "/path/client.npz"``: arrays ``x`` float32 (n, C, H, W) already in the model's input space (pixels in
  [0, 1], normalised per channel as ``secure_fal.data.load_dataset`` does; ``export_client_data`` writes such a
  file) and ``y`` int (n,) labels in [0, num_classes). The labels act as the labeling oracle: a label is read only
  when the client's sampler picks the sample.
- ``data = "/path/folder"``: images in ``folder/<class id>/*`` (PNG, JPEG, ...; class ids are the dataset's integer
  labels), read in sorted order, scaled to [0, 1] and normalised per channel with node config ``data-mean`` and
  ``data-std`` (comma-separated floats, one per channel), or, if unset, with the statistics of these images.

Shapes are checked against the experiment's dataset (``secure_fal.data.datasets.SHAPES``) so that a wrong file
fails at once with the node's client id and the field, not inside the model.

Indices: a node holds its rows only, so its pool is ``0..n-1`` in its own index space; ``ClientData.index`` maps
them to the ids it reports as its labeled set (train indices of the simulated split, so that a deployment equals
the in-process run; positions in the file for its own data).

Cache (node config ``cache-dir``, default ``$FLWR_HOME/secure_fal-cache``, FLWR_HOME defaulting to ``~/.flwr``):
one ``.npz`` per (data config, seed, client id, package version), written atomically in a directory only the
node's user can read. It holds this client's rows, which never leave the node. Nothing heavy is imported at module
level: torch, scikit-learn and the split code are imported when data is first built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import __version__
from ...secagg.errors import InputError

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass(frozen=True)
class DataSource:
    """Where a node's client data comes from (its node config).

    Attributes:
        path: node config ``data``: an ``.npz`` file or an image folder; '' = the simulated split.
        cache_dir: node config ``cache-dir``: where the simulated split's rows are kept between messages;
            '' = no disk cache (the rows are still kept in memory by the process that built them).
        mean, std: node config ``data-mean`` / ``data-std``, per-channel normalisation of an image folder.
    """

    path: str = ""
    cache_dir: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def default_cache_dir() -> str:
    """``$FLWR_HOME/secure_fal-cache`` (FLWR_HOME defaults to ``~/.flwr``, as Flower's own)."""
    return str(Path(os.environ.get("FLWR_HOME", "~/.flwr")).expanduser() / "secure_fal-cache")


def _floats(node_config: Mapping[str, object], key: str) -> tuple[float, ...]:
    raw = node_config.get(key)
    if raw is None:
        return ()
    try:
        values = tuple(float(v) for v in str(raw).split(","))
    except ValueError:
        raise InputError(f"node config {key}={raw!r} is not a comma-separated list of floats", field=key) from None
    return values


def data_source_of(node_config: Mapping[str, object]) -> DataSource:
    """The ``DataSource`` of a node config (keys ``data``, ``cache-dir``, ``data-mean``, ``data-std``)."""
    cache = node_config.get("cache-dir")
    return DataSource(str(node_config.get("data", "")), default_cache_dir() if cache is None else str(cache),
                      _floats(node_config, "data-mean"), _floats(node_config, "data-std"))


@dataclass
class ClientData:
    """One client's rows.

    Attributes:
        x: float32 (n, C, H, W) inputs in the model's input space.
        y: int64 (n,) labels (the oracle: read only at labeled positions).
        index: int64 (n,) sorted, the id each row is reported under (train index in the simulated split).
        num_classes: number of classes of the experiment's dataset.
    """

    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    num_classes: int


def cache_key(config_data: Mapping[str, object], seed: int, cid: int) -> str:
    """Hex digest naming one client's cached rows: the data config, the experiment seed, the client, the version."""
    blob = json.dumps({"data": dict(config_data), "seed": seed, "client": cid, "version": __version__,
                       "cache": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _save(path: Path, data: ClientData) -> None:
    """Write atomically (a reader never sees half a file), readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        np.savez(f, x=data.x, y=data.y, index=data.index, num_classes=np.int64(data.num_classes))
    tmp.replace(path)


def _load(path: Path) -> ClientData | None:
    try:
        with np.load(path) as f:
            return ClientData(f["x"], f["y"], f["index"], int(f["num_classes"]))
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable cache file %s: %s", path, exc)
        return None


def simulated_client_data(config, cid: int, cache_dir: str = "") -> ClientData:
    """Client ``cid``'s rows of the simulated split of ``config`` (an ``ExperimentConfig``), from the cache when
    present; else computed (``build_pools``) and cached."""
    from dataclasses import asdict

    path = Path(cache_dir) / f"pool-{cache_key(asdict(config.data), config.seed, cid)}.npz" if cache_dir else None
    if path is not None and path.exists() and (cached := _load(path)) is not None:
        return cached
    from ...experiment.setup import build_pools

    pools = build_pools(config)
    if not 0 <= cid < pools.n_clients:
        raise InputError(f"no such client in an experiment of {pools.n_clients} clients", client=cid,
                         field="client-id")
    import torch

    index = np.asarray(pools.pools[cid], dtype=np.int64)
    rows = torch.as_tensor(index)
    data = ClientData(pools.x[rows].numpy(), pools.y[rows].numpy().astype(np.int64), index, pools.num_classes)
    if path is not None:
        _save(path, data)
    return data


def _check(data: ClientData, dataset: str, cid: int, where: str) -> ClientData:
    """Shapes and labels against the experiment's dataset; InputError naming the client and field ``data``."""
    from ...data.datasets import SHAPES

    want_shape, num_classes = SHAPES[dataset]
    if data.x.ndim != 4 or tuple(data.x.shape[1:]) != want_shape:
        raise InputError(f"{where}: inputs of shape {tuple(data.x.shape)}, the {dataset} model needs (n, "
                         f"{', '.join(map(str, want_shape))})", client=cid, field="data")
    if data.y.shape != (len(data.x),):
        raise InputError(f"{where}: {len(data.y)} labels for {len(data.x)} inputs", client=cid, field="data")
    if len(data.y) and not (0 <= data.y.min() and data.y.max() < num_classes):
        raise InputError(f"{where}: labels must be in [0, {num_classes})", client=cid, field="data")
    if not np.all(np.isfinite(data.x)):
        raise InputError(f"{where}: inputs hold NaN or infinite values", client=cid, field="data")
    return data


def _image_folder(root: Path, cid: int) -> tuple[np.ndarray, np.ndarray]:
    """``data.files.read_image_folder`` with its format errors as InputError naming the client and field ``data``."""
    from ...data.files import DatasetFormatError, read_image_folder

    try:
        return read_image_folder(root)
    except DatasetFormatError as exc:
        raise InputError(str(exc), client=cid, field="data") from None


def own_client_data(source: DataSource, dataset: str, cid: int) -> ClientData:
    """The node's own data (``source.path``: ``.npz`` or image folder, see the module docstring)."""
    from ...data.datasets import SHAPES

    path = Path(source.path).expanduser()
    if path.is_dir():
        x, y = _image_folder(path, cid)
        mean = np.asarray(source.mean or x.mean(axis=(0, 2, 3)))
        std = np.asarray(source.std or x.std(axis=(0, 2, 3)))
        if mean.shape != (x.shape[1],) or std.shape != (x.shape[1],) or not np.all(std > 0):
            raise InputError(f"data-mean/data-std need {x.shape[1]} values (std > 0)", client=cid, field="data-std")
        if not source.mean:
            log.warning("client %d: normalising %s with its own statistics; set data-mean and data-std to the "
                        "federation's", cid, path)
        x = ((x - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)).astype(np.float32)
    elif path.is_file():
        try:
            with np.load(path) as f:
                x, y = np.asarray(f["x"], dtype=np.float32), np.asarray(f["y"]).astype(np.int64)
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: not an .npz with arrays 'x' and 'y' ({type(exc).__name__})", client=cid,
                             field="data") from None
    else:
        raise InputError(f"{path}: no such file or folder", client=cid, field="data")
    data = ClientData(x, y, np.arange(len(y), dtype=np.int64), SHAPES[dataset][1])
    return _check(data, dataset, cid, str(path))


def client_data(config, cid: int, source: DataSource) -> ClientData:
    """Client ``cid``'s data under ``config`` (an ``ExperimentConfig``) from ``source``."""
    if source.path:
        return own_client_data(source, config.data.dataset, cid)
    return simulated_client_data(config, cid, source.cache_dir)


def export_client_data(config, cid: int, path: str | os.PathLike) -> Path:
    """Write client ``cid``'s rows of the simulated split as an ``.npz`` a node can load with ``data = PATH``."""
    data = simulated_client_data(config, cid)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=data.x, y=data.y)
    return path
