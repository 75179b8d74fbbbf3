"""pool_view: batched eval-mode inference into a PoolView."""

import pytest
import torch
from torch import nn

from secure_fal.sampling import get_sampler, pool_view


class TinyModel(nn.Module):
    """embed: linear + batch norm + dropout + ReLU; head: linear. Counts embed calls."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Dropout(0.5), nn.ReLU())
        self.classifier = nn.Linear(5, 4)
        self.calls = 0

    def embed(self, x):
        self.calls += 1
        return self.features(x)

    def head(self, z):
        return self.classifier(z)


def data(n=23):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[:5] = True
    return x, mask, torch.randint(4, (n,), generator=g)


def test_eval_mode_batched_outputs_and_training_mode_restored():
    model, (x, mask, _) = TinyModel(), data()
    model.train()
    stats = model.features[1].running_mean.clone()
    view = pool_view(model, x, mask, needs={"probs"}, batch_size=8)
    assert model.calls == 3  # ceil(23 / 8) batches, never one by one
    assert model.training
    assert torch.equal(model.features[1].running_mean, stats)
    model.eval()
    with torch.no_grad():
        z = model.embed(x)
        assert torch.allclose(view.embeddings, z, atol=1e-6)
        assert torch.allclose(view.probs, torch.softmax(model.head(z), dim=1), atol=1e-6)
    assert torch.equal(view.labeled_mask, mask) and view.labels is None and view.grad_probs is None


def test_batch_size_does_not_change_the_result():
    model, (x, mask, y) = TinyModel(), data()
    a = pool_view(model, x, mask, y, needs={"labels"}, batch_size=1000)
    b = pool_view(model, x, mask, y, needs={"labels"}, batch_size=4)
    for name in ("probs", "embeddings"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-6)
    assert torch.equal(a.labels, y)


def test_feeds_a_sampler_end_to_end():
    model, (x, mask, y) = TinyModel(), data()
    for name in ("fairfal", "iwkmeans"):
        sampler = get_sampler(name)
        view = pool_view(model, x, mask, y, needs=sampler.needs, device="cpu")
        picked = sampler.select(view, 6, torch.Generator().manual_seed(0))
        assert len(set(picked.tolist())) == 6 and not mask[picked].any()


def test_errors():
    model, (x, mask, _) = TinyModel(), data()
    with pytest.raises(ValueError, match="labels are needed"):
        pool_view(model, x, mask, needs=get_sampler("fairfal").needs)
    with pytest.raises(ValueError, match="unknown fields"):
        pool_view(model, x, mask, needs={"logits"})
    with pytest.raises(ValueError, match="empty"):
        pool_view(model, x[:0], mask[:0], needs=())
    with pytest.raises(ValueError, match="batch_size"):
        pool_view(model, x, mask, needs=(), batch_size=0)
