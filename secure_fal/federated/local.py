"""Training and evaluation on one party's own data: a FedAvg client step, local-only training (S-AL, the
client-alone bound), fine-tuning of the global model (FAL-Local), and test-set evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SGDConfig:
    """Local optimiser settings (SPEC defaults).

    Attributes:
        lr: learning rate.
        momentum: SGD momentum (the optimiser, and so its momentum buffer, is new at every ``train_local`` call).
        weight_decay: L2 penalty.
        batch_size: samples per step; a trailing batch of a single sample is merged into the one before
            it (BatchNorm cannot normalise one sample).
    """

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-5
    batch_size: int = 64


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    chunks = list(torch.split(order, batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat(chunks[-2:])
        chunks.pop()
    return chunks


def train_local(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, sgd: SGDConfig = SGDConfig(),
                seed: int = 0, device: torch.device | str | None = None) -> float:
    """Train ``model`` in place with SGD on (x, y) for ``epochs`` passes over the data.

    Args:
        model: a classifier returning logits; trained on ``device`` (default: where its parameters are).
        x: inputs (N, ...), y: int64 labels (N,), N >= 1; moved to the model's device.
        epochs: full passes over the data, >= 0.
        sgd: optimiser settings.
        seed: seeds the shuffling (a private torch.Generator; the global RNG is untouched).
    Returns:
        mean cross-entropy over the batches of the last epoch (nan when epochs == 0).
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need N >= 1 inputs with one label each, got {len(x)} inputs and {len(y)} labels")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=sgd.lr, momentum=sgd.momentum,
                                weight_decay=sgd.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    last_loss = math.nan
    for _ in range(epochs):
        total, steps = 0.0, 0
        for idx in _batches(len(x), sgd.batch_size, generator):
            idx = idx.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
            steps += 1
        last_loss = total / steps
    return last_loss


@dataclass(frozen=True)
class EvalMetrics:
    """How a model does on a labeled test set.

    Attributes:
        accuracy: share of correct predictions, in [0, 1].
        loss: mean cross-entropy (nats per sample).
        class_accuracies: per class c in [0, num_classes): accuracy on the test samples of class c (None where the
            test set has none of class c).
    """

    accuracy: float
    loss: float
    class_accuracies: list[float | None]


@torch.no_grad()
def eval_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, *, batch_size: int = 1024,
                 device: torch.device | str | None = None) -> EvalMetrics:
    """Accuracy, mean cross-entropy and per-class accuracy of ``model`` (put in eval mode) on (x (N, ...), y (N,))."""
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty set")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    predictions, loss = [], 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        yb = y[start:start + batch_size].to(device)
        logits = model(xb)
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        predictions.append(logits.argmax(dim=1).cpu())
    y = y.cpu()
    correct = torch.cat(predictions) == y
    totals = torch.bincount(y, minlength=num_classes).tolist()
    hits = torch.bincount(y[correct], minlength=num_classes).tolist()
    return EvalMetrics(int(correct.sum()) / len(x), loss / len(x),
                       [h / n if n else None for h, n in zip(hits, totals)])


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
             device: torch.device | str | None = None) -> tuple[float, float]:
    """Accuracy in [0, 1] and mean cross-entropy of ``model`` (put in eval mode) on (x, y)."""
    metrics = eval_metrics(model, x, y, int(y.max()) + 1 if len(y) else 1, batch_size=batch_size, device=device)
    return metrics.accuracy, metrics.loss
