"""Classifiers that expose their penultimate features, as the samplers need.

Every model has ``embed(x) -> (B, D)`` (penultimate features), ``head(z) -> (B, num_classes)`` logits,
``forward(x) = head(embed(x))`` and an ``embedding_dim`` attribute (D).

- ``CNN``: the reference network, 4 x [conv3x3(64) + BN + ReLU + maxpool2] then linear.
- ``MLP``: fully connected ReLU network (for the 8x8 digits).
- ``resnet18``: torchvision's ResNet-18, no pretrained weights, stem adapted to small images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .plugins import PluginError, is_plugin, load_plugin


class EmbeddingClassifier(nn.Module):
    """Base: ``features`` maps (B, C, H, W) to (B, D), ``classifier`` maps (B, D) to logits."""

    features: nn.Module
    classifier: nn.Module
    embedding_dim: int

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: (B, C, H, W) -> (B, embedding_dim)."""
        return self.features(x)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from features: (B, embedding_dim) -> (B, num_classes)."""
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class CNN(EmbeddingClassifier):
    """The reference CNN: ``blocks`` x [conv3x3(width, padding 1) + BatchNorm + ReLU + maxpool 2x2] + linear.

    At 28x28 the feature map shrinks 28 -> 14 -> 7 -> 3 -> 1, so the embedding is the 64 channels of the
    last 1x1 map, exactly the reference. Other sizes: a block whose input is already 1x1 skips its pooling
    (8x8 digits: 8 -> 4 -> 2 -> 1 -> 1), and a global average pool at the end turns any remaining HxW map
    into one vector (32x32 CIFAR: 2x2 -> 1x1), so the embedding is always ``width``-dimensional.

    Args:
        in_channels: C of the input images.
        num_classes: number of logits.
        image_size: input height (= width) in pixels, >= 1.
        width: channels of every conv layer (= embedding_dim), default 64.
        blocks: number of conv blocks, default 4.

    The conv weights are stored channels-last (NHWC strides; the values, state dict keys and shapes are the
    usual ones): on the CPU, PyTorch's NCHW max-pool and one-channel convolution are slow, and this layout made
    a training step of a 64-image batch 1.47x faster and inference 2.1x faster on one core (commit message of
    this change; docs/benchmarks.md). Outputs agree with the NCHW layout up to float rounding.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int = 28, width: int = 64,
                 blocks: int = 4) -> None:
        super().__init__()
        if image_size < 1 or blocks < 1:
            raise ValueError(f"image_size and blocks must be >= 1, got {image_size}, {blocks}")
        layers: list[nn.Module] = []
        size, channels = image_size, in_channels
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.embedding_dim = width
        self.to(memory_format=torch.channels_last)


class MLP(EmbeddingClassifier):
    """Flatten, then Linear + ReLU per hidden layer; the last hidden layer is the embedding.

    Args:
        in_features: C * H * W of the inputs.
        num_classes: number of logits.
        hidden: widths of the hidden layers, default (128, 64); embedding_dim = hidden[-1].
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (128, 64)) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("MLP needs at least one hidden layer (its output is the embedding)")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.embedding_dim = width


class ResNet18(EmbeddingClassifier):
    """torchvision ResNet-18 from random weights, stem adapted to small (e.g. 32x32) images.

    The 7x7 stride-2 stem convolution becomes 3x3 stride 1 and the stem max-pool is removed (the usual
    CIFAR adaptation), so 32x32 inputs reach the last stage at 4x4. Embedding: the 512-d global average pool.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.features = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3,
                                      net.layer4, net.avgpool, nn.Flatten())
        self.classifier = net.fc
        self.embedding_dim = net.fc.in_features


MODEL_NAMES = ("cnn", "mlp", "resnet18")


def build_model(name: str, in_channels: int, image_size: int, num_classes: int, **kwargs) -> EmbeddingClassifier:
    """Model by name for inputs (B, in_channels, image_size, image_size).

    Args:
        name: 'cnn' (reference CNN), 'mlp' (kwargs: hidden), 'resnet18', or a plug-in ``module:function``, called
            as ``function(in_channels, image_size, num_classes, **kwargs)``; it returns an ``nn.Module`` with
            ``embed(x) -> (B, D)``, ``head(z) -> (B, num_classes)``, ``forward = head(embed(x))`` and
            ``embedding_dim = D`` (deriving from ``EmbeddingClassifier`` gives all but the two parts); the samplers
            need the embedding. Check one with ``check_model``.
        kwargs: extra constructor arguments (CNN: width, blocks; MLP: hidden; a plug-in: its own).
    """
    if is_plugin(name):
        return load_plugin(name, "training.model")(in_channels, image_size, num_classes, **kwargs)
    if name == "cnn":
        return CNN(in_channels, num_classes, image_size, **kwargs)
    if name == "mlp":
        return MLP(in_channels * image_size * image_size, num_classes, **kwargs)
    if name == "resnet18":
        return ResNet18(in_channels, num_classes, **kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")


@torch.no_grad()
def check_model(model: object, x: torch.Tensor, num_classes: int, where: str) -> None:
    """Raise PluginError (prefixed by ``where``) unless ``model`` maps the (B, C, H, W) batch ``x`` (B >= 2) to
    ``embed`` (B, embedding_dim) and ``forward`` logits (B, num_classes). The model is run in eval mode and left so."""
    if not isinstance(model, nn.Module):
        raise PluginError(f"{where}: returned {type(model).__name__}, expected a torch.nn.Module")
    missing = [a for a in ("embed", "head", "embedding_dim") if not hasattr(model, a)]
    if missing:
        raise PluginError(f"{where}: the model lacks {', '.join(missing)} (derive it from "
                          "secure_fal.models.EmbeddingClassifier: the samplers need the embedding)")
    model.eval()
    try:
        z, logits = model.embed(x), model(x)
    except Exception as exc:   # any failure of user code on a batch of the data's shape
        raise PluginError(f"{where}: fails on a batch of shape {tuple(x.shape)}: {type(exc).__name__}: {exc}") from None
    if tuple(z.shape) != (len(x), model.embedding_dim):
        raise PluginError(f"{where}: embed gives shape {tuple(z.shape)}, expected ({len(x)}, embedding_dim = "
                          f"{model.embedding_dim})")
    if tuple(logits.shape) != (len(x), num_classes):
        raise PluginError(f"{where}: forward gives shape {tuple(logits.shape)}, expected ({len(x)}, {num_classes})")
