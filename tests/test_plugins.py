"""Your own data and model: ``module:function`` plug-ins in the config (checked, one-line errors for bad ones) and
the npz / image-folder loaders."""

import json
import textwrap

import numpy as np
import pytest

from secure_fal.cli import main
from secure_fal.data import load_dataset
from secure_fal.data.files import DatasetFormatError
from secure_fal.experiment import ConfigError, load_config

from .test_cli_run import CONFIG

PLUGIN = textwrap.dedent('''
    import numpy as np
    from torch import nn
    from secure_fal.data import make_dataset
    from secure_fal.models import EmbeddingClassifier

    def load(root=None, download=False):
        rng = np.random.default_rng(0)
        x, y = rng.uniform(size=(120, 3, 6, 6)), np.arange(120) % 4
        return make_dataset("mine", x[:90], y[:90], x[90:], y[90:], 4)

    def wrong_shapes(root=None, download=False):
        data = load()
        data.x_train = data.x_train[:, :, :, :5]
        return data

    class Tiny(EmbeddingClassifier):
        def __init__(self, in_channels, image_size, num_classes, width=8):
            super().__init__()
            self.features = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, width), nn.ReLU())
            self.classifier = nn.Linear(width, num_classes)
            self.embedding_dim = width

    def build(in_channels, image_size, num_classes, **options):
        return Tiny(in_channels, image_size, num_classes, **options)

    def wrong_input(in_channels, image_size, num_classes, **options):
        return Tiny(in_channels, image_size + 1, num_classes)

    def no_embedding(in_channels, image_size, num_classes, **options):
        return nn.Linear(in_channels * image_size ** 2, num_classes)
''')


@pytest.fixture
def plugin_config(tmp_path, monkeypatch):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "plugin.toml"
    path.write_text(CONFIG.replace('model = "mlp"\nmodel_options = {hidden = [32]}',
                                   'model = "my_plugin:build"\nmodel_options = {width = 16}')
                    .replace("[data]", '[data]\ndataset = "my_plugin:load"'))
    return path


def test_a_plugin_dataset_and_model_run(plugin_config, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(plugin_config), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["data"]["num_classes"] == 4 and doc["data"]["train_size"] == 90
    assert doc["config"]["training"]["model"] == "my_plugin:build"


@pytest.mark.parametrize("setting, message", [
    ("data.dataset=my_plugin:wrong_shapes", "data.dataset 'my_plugin:wrong_shapes': train split: inputs of shape "
                                            "(90, 3, 6, 5) (torch.float32), expected float (N, C, H, H)"),
    ("data.dataset=nowhere:load", "data.dataset 'nowhere:load': cannot import 'nowhere'"),
    ("data.dataset=my_plugin:absent", "module 'my_plugin' has no function 'absent'"),
    ("training.model=my_plugin:no_embedding", "training.model 'my_plugin:no_embedding': the model lacks embed, "
                                              "head, embedding_dim"),
    ("training.model=my_plugin:wrong_input", "training.model 'my_plugin:wrong_input': fails on a batch of shape "
                                             "(2, 3, 6, 6): RuntimeError"),
    ("data.dataset=my-plugin", "data.dataset: unknown value 'my-plugin'"),
])
def test_bad_plugins_are_one_line_errors(plugin_config, tmp_path, capsys, setting, message):
    assert main(["run", str(plugin_config), "--out", str(tmp_path / "o"), "--quiet", "--set", setting]) == 1
    err = capsys.readouterr().err
    assert err.startswith("secure-fal run: error: ") and message in err and err.count("\n") == 1


def test_npz_dataset(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (40, 5, 5), dtype=np.uint8), y_train=np.arange(40) % 3,
             x_test=rng.integers(0, 256, (9, 5, 5), dtype=np.uint8), y_test=np.arange(9) % 3)
    data = load_dataset("npz", root=tmp_path / "d.npz")
    assert tuple(data.x_train.shape) == (40, 1, 5, 5) and data.num_classes == 3
    assert abs(float(data.x_train.mean())) < 1e-5
    np.savez(tmp_path / "bad.npz", x_train=np.ones((4, 5, 5)) * 7, y_train=np.zeros(4), x_test=np.ones((2, 5, 5)),
             y_test=np.zeros(2))
    with pytest.raises(DatasetFormatError, match="float pixels must be in \\[0, 1\\]"):
        load_dataset("npz", root=tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="data.root: data.dataset = 'npz' reads your files at data.root"):
        load_config(None, {"data.dataset": "npz"})


def test_image_folder_dataset(tmp_path):
    from PIL import Image

    for split, n in (("train", 3), ("test", 1)):
        for label in (0, 1):
            folder = tmp_path / split / str(label)
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((4, 4, 3), 60 * label + i, dtype=np.uint8)).save(folder / f"{i}.png")
    data = load_dataset("folder", root=tmp_path)
    assert tuple(data.x_train.shape) == (6, 3, 4, 4) and data.y_test.tolist() == [0, 1] and data.num_classes == 2
    (tmp_path / "train" / "cats").mkdir()
    with pytest.raises(DatasetFormatError, match="sub-folder 'cats' is not an integer class id"):
        load_dataset("folder", root=tmp_path)


def test_the_shipped_example_plugins_pass_their_checks(monkeypatch):
    from pathlib import Path

    from secure_fal.models import build_model, check_model

    monkeypatch.chdir(Path(__file__).resolve().parents[1])         # the example config is run from the repo root
    config = load_config("examples/configs/own_data_model.toml")
    data = load_dataset(config.data.dataset)
    model = build_model(config.training.model, data.in_channels, data.image_size, data.num_classes,
                        **config.training.model_options)
    check_model(model, data.x_train[:2], data.num_classes, "example")
