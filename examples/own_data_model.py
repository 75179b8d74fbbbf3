"""A dataset loader and a model builder plugged into a config (``examples/configs/own_data_model.toml``).

    secure-fal run examples/configs/own_data_model.toml        # from the repository root

A loader is called as ``load(root=..., download=...)`` (the config's ``data.root`` and ``data.download``) and returns
a ``secure_fal.data.Dataset``; ``make_dataset`` builds one from pixels in [0, 1] shaped (N, C, H, W) and normalises
them. A model builder is called as ``build(in_channels, image_size, num_classes, **training.model_options)`` and
returns an ``EmbeddingClassifier``: ``features`` maps a batch to its embedding, ``classifier`` the embedding to
logits, ``embedding_dim`` is the embedding's width. Both are checked before training starts.
"""

import numpy as np
from torch import nn

from secure_fal.data import make_dataset
from secure_fal.models import EmbeddingClassifier


def load_upsampled_digits(root=None, download=False):
    """scikit-learn's 8x8 digits, upsampled to 16x16 by repeating pixels (a stand-in for your own arrays)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.kron(bunch.images, np.ones((2, 2)))[:, None] / 16.0          # (1797, 1, 16, 16) in [0, 1]
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:1400], order[1400:]
    return make_dataset("digits16", images[train], bunch.target[train], images[test], bunch.target[test], 10)


class SmallConvNet(EmbeddingClassifier):
    """A conv layer (``width`` channels, max-pooled to half size), a 64-wide hidden layer (the embedding), a linear
    head."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(width * (image_size // 2) ** 2, 64), nn.ReLU())
        self.classifier = nn.Linear(64, num_classes)
        self.embedding_dim = 64


def build_small_convnet(in_channels, image_size, num_classes, **options):
    return SmallConvNet(in_channels, image_size, num_classes, **options)
