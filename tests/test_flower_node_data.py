"""A FAL client's data on its node (secure_fal.flower.fal.node_data): the simulated split's rows and their cache, and a
node's own .npz file or image folder, checked against the experiment's dataset."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")

from secure_fal.experiment import load_config  # noqa: E402
from secure_fal.experiment.setup import build_pools  # noqa: E402
from secure_fal.flower.fal.node_data import (DataSource, client_data, data_source_of, export_client_data,  # noqa: E402
                                             own_client_data, simulated_client_data)
from secure_fal.secagg import InputError  # noqa: E402

CONFIG = {"data.clients": 3, "data.split": "dirichlet", "data.alpha": 0.5, "seed": 3}


def test_simulated_rows_are_the_clients_pool_and_the_cache_returns_them(tmp_path):
    config = load_config(None, CONFIG)
    pools = build_pools(config)
    cache = tmp_path / "cache"
    first = simulated_client_data(config, 2, str(cache))
    (file,) = cache.iterdir()
    assert file.stat().st_mode & 0o077 == 0 and cache.stat().st_mode & 0o077 == 0  # this user's only
    again = simulated_client_data(config, 2, str(cache))
    assert np.array_equal(first.index, pools.pools[2])
    for got in (first, again):
        assert np.array_equal(got.x, pools.x[pools.pools[2]].numpy())
        assert np.array_equal(got.y, pools.y[pools.pools[2]].numpy())
    # another seed, another split: another cache entry, never the old rows
    other = simulated_client_data(load_config(None, {**CONFIG, "seed": 4}), 2, str(cache))
    assert len(list(cache.iterdir())) == 2 and not np.array_equal(other.index, first.index)


def test_a_corrupt_cache_file_is_rebuilt(tmp_path):
    config = load_config(None, CONFIG)
    cache = tmp_path / "cache"
    want = simulated_client_data(config, 0, str(cache))
    (file,) = cache.iterdir()
    file.write_bytes(b"not an npz")
    assert np.array_equal(simulated_client_data(config, 0, str(cache)).x, want.x)


def test_npz_file_round_trip_and_bad_files(tmp_path):
    config = load_config(None, CONFIG)
    path = export_client_data(config, 1, tmp_path / "c1.npz")
    got = client_data(config, 1, DataSource(path=str(path)))
    want = simulated_client_data(config, 1)
    assert np.array_equal(got.x, want.x) and np.array_equal(got.y, want.y)
    assert np.array_equal(got.index, np.arange(len(want.y)))
    np.savez(tmp_path / "wrong-shape.npz", x=np.zeros((4, 1, 28, 28), np.float32), y=np.zeros(4, np.int64))
    np.savez(tmp_path / "bad-labels.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.array([0, 1, 2, 10]))
    np.savez(tmp_path / "no-y.npz", x=np.zeros((4, 1, 8, 8), np.float32))
    for name, match in (("wrong-shape.npz", "needs \\(n, 1, 8, 8\\)"), ("bad-labels.npz", r"labels must be in \[0, 10\)"),
                        ("no-y.npz", "arrays 'x' and 'y'"), ("missing.npz", "no such file")):
        with pytest.raises(InputError, match=match) as err:
            own_client_data(DataSource(path=str(tmp_path / name)), "digits", 5)
        assert err.value.client == 5 and err.value.field == "data"


def test_image_folder_is_read_by_class_and_normalised(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, count in ((3, 2), (7, 3)):
        (tmp_path / "imgs" / str(label)).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "imgs" / str(label) / f"{i}.png")
    source = DataSource(path=str(tmp_path / "imgs"), mean=(0.5,), std=(0.25,))
    data = own_client_data(source, "digits", 0)
    assert data.x.shape == (5, 1, 8, 8) and data.y.tolist() == [3, 3, 7, 7, 7]
    first = np.asarray(Image.open(tmp_path / "imgs" / "3" / "0.png"), dtype=np.float64) / 255
    assert np.allclose(data.x[0, 0], (first - 0.5) / 0.25, atol=1e-6)
    with pytest.raises(InputError, match="28, 28"):
        own_client_data(source, "fmnist", 0)
    (tmp_path / "imgs" / "cat").mkdir()
    with pytest.raises(InputError, match="not an integer class id"):
        own_client_data(source, "digits", 0)


def test_node_config_keys():
    source = data_source_of({"data": "/d/c.npz", "cache-dir": "/c", "data-mean": "0.1,0.2", "data-std": "1,2"})
    assert source == DataSource("/d/c.npz", "/c", (0.1, 0.2), (1.0, 2.0))
    assert data_source_of({}).path == "" and data_source_of({}).cache_dir.endswith("secure_fal-cache")
    with pytest.raises(InputError, match="data-mean"):
        data_source_of({"data-mean": "a,b"})
