"""Training and evaluation on one party's own data: a FedAvg client step, local-only training (S-AL, the
client-alone bound, the local-only models of FairFAL and LoGo), fine-tuning of the global model (FAL-Local),
distillation from the global model (IFAL), and test-set evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

TEACHER_CHUNK = 256
"""Samples per teacher forward pass when ``train_distilled`` computes its soft targets."""


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
                seed: int = 0, device: torch.device | str | None = None,
                lr_at_step: Callable[[int], float] | None = None, stop_accuracy: float | None = None) -> float:
    """Train ``model`` in place with SGD on (x, y) for ``epochs`` passes over the data.

    Args:
        model: a classifier returning logits; trained on ``device`` (default: where its parameters are).
        x: inputs (N, ...), y: int64 labels (N,), N >= 1; moved to the model's device.
        epochs: full passes over the data, >= 0 (the most, with ``stop_accuracy``).
        sgd: optimiser settings.
        seed: seeds the shuffling (a private torch.Generator; the global RNG is untouched).
        lr_at_step: learning rate of optimiser step t (0-based, counted over all epochs); default: ``sgd.lr``
            throughout.
        stop_accuracy: after each epoch, stop once the model's accuracy on (x, y) (eval mode) is at least this.
    Returns:
        mean cross-entropy over the batches of the last epoch run (nan when no epoch ran).
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
    step = 0
    for _ in range(epochs):
        total, steps = 0.0, 0
        for idx in _batches(len(x), sgd.batch_size, generator):
            if lr_at_step is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at_step(step)
            idx = idx.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item()
            steps += 1
            step += 1
        last_loss = total / steps
        if stop_accuracy is not None:
            if evaluate(model, x, y, batch_size=max(sgd.batch_size, 1024), device=device)[0] >= stop_accuracy:
                break
            model.train()
    return last_loss


def train_distilled(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, *, max_epochs: int,
                    sgd: SGDConfig, temperature: float, ce_weight: float, patience: int, seed: int = 0,
                    device: torch.device | str | None = None) -> int:
    """Train ``student`` in place on (x, y) with knowledge distillation from ``teacher`` (kept in eval mode).

    Loss per batch: ce_weight * CE(student, y) + (1 - ce_weight) * T² * mean over the batch of
    KL(softmax(teacher / T) || softmax(student / T)). Training stops after ``max_epochs``, or once the mean batch
    loss of an epoch has not fallen below the best so far for ``patience`` epochs in a row; the student keeps
    its weights of that last epoch (the IFAL reference restores a "best" state dict that aliases the live
    weights, so its best is the last). The teacher's soft targets are computed once, in chunks of
    ``TEACHER_CHUNK`` samples, rather than per batch as the reference does: the same values (eval mode, fixed
    inputs) up to float rounding, one teacher forward pass per sample instead of one per sample and epoch.

    Returns:
        the number of epochs run.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need N >= 1 inputs with one label each, got {len(x)} inputs and {len(y)} labels")
    device = torch.device(device) if device is not None else next(student.parameters()).device
    student.to(device).train()
    teacher.to(device).eval()
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.SGD(student.parameters(), lr=sgd.lr, momentum=sgd.momentum,
                                weight_decay=sgd.weight_decay)
    with torch.no_grad():  # the teacher is fixed and in eval mode: its soft targets are computed once
        targets = torch.cat([F.softmax(teacher(x[i:i + TEACHER_CHUNK]) / temperature, dim=1)
                             for i in range(0, len(x), TEACHER_CHUNK)])
    generator = torch.Generator().manual_seed(seed)
    best, stale = math.inf, 0
    for epoch in range(max_epochs):
        total, steps = 0.0, 0
        for idx in _batches(len(x), sgd.batch_size, generator):
            idx = idx.to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = student(x[idx])
            kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), targets[idx], reduction="batchmean")
            loss = ce_weight * F.cross_entropy(logits, y[idx]) + (1.0 - ce_weight) * temperature ** 2 * kd
            loss.backward()
            optimizer.step()
            total += loss.item()
            steps += 1
        mean = total / steps
        if mean < best:
            best, stale = mean, 0
        else:
            stale += 1
            if stale >= patience:
                return epoch + 1
    return max_epochs


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
