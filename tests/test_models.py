"""Models expose embed/head with forward = head(embed); device choice and seeding."""

import pytest
import torch
from torch import nn

from secure_fal.device import DeviceError, get_device, seed_everything
from secure_fal.models import CNN, MLP, build_model


@pytest.mark.parametrize("name,channels,size,dim", [("cnn", 1, 28, 64), ("cnn", 1, 8, 64), ("cnn", 3, 32, 64),
                                                    ("mlp", 1, 8, 64), ("resnet18", 3, 32, 512)])
def test_embed_head_forward(name, channels, size, dim):
    seed_everything(0)
    model = build_model(name, channels, size, num_classes=7).eval()
    x = torch.randn(3, channels, size, size)
    z = model.embed(x)
    assert model.embedding_dim == dim and z.shape == (3, dim)
    logits = model.head(z)
    assert logits.shape == (3, 7)
    assert torch.equal(model(x), logits)


def test_cnn_matches_reference_at_28x28():
    model = CNN(1, 10, image_size=28)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(c.out_channels == 64 and c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    # before the final global pool the map is already 1x1: the embedding is the reference's flattened map
    body = nn.Sequential(*list(model.features)[:-2]).eval()
    assert body(torch.randn(2, 1, 28, 28)).shape == (2, 64, 1, 1)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 64


def test_cnn_skips_pooling_once_the_map_is_1x1():
    model = CNN(1, 10, image_size=8)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 3  # 8 -> 4 -> 2 -> 1 -> 1
    model.train()
    model(torch.randn(4, 1, 8, 8)).sum().backward()  # trains at 8x8


def test_mlp_widths_and_model_errors():
    mlp = MLP(64, 10, hidden=(32, 16))
    assert mlp.embedding_dim == 16 and mlp.embed(torch.randn(5, 1, 8, 8)).shape == (5, 16)
    with pytest.raises(ValueError, match="hidden"):
        MLP(64, 10, hidden=())
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vit", 1, 28, 10)


def test_resnet18_is_adapted_to_small_images():
    model = build_model("resnet18", 3, 32, 10)
    first = model.features[0]
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_seed_everything_makes_initialisation_reproducible():
    seed_everything(5)
    a = build_model("cnn", 1, 28, 10).state_dict()
    seed_everything(5)
    b = build_model("cnn", 1, 28, 10).state_dict()
    seed_everything(6)
    c = build_model("cnn", 1, 28, 10).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_get_device():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device("cuda")
    with pytest.raises(DeviceError, match="device 'tpu' .*: unknown"):
        get_device("tpu")
