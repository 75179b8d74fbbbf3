"""Batched inference: a model's features and logits over inputs, and the :class:`PoolView` of a pool."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .base import FIELDS, PoolView


def pool_view(model: nn.Module, x: torch.Tensor, labeled_mask: torch.Tensor,
              labels: torch.Tensor | None = None, *, needs: Iterable[str], batch_size: int = 512,
              device: torch.device | str | None = None) -> PoolView:
    """Run ``model`` over the pool once, in batches, and describe it for a sampler.

    The model must expose ``embed(x) -> (B, D)`` penultimate features and ``head(z) -> (B, C)``
    logits. It runs in eval mode under ``torch.no_grad`` on the device of its parameters; its
    training mode is restored afterwards.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (N, ...)
        Pool inputs (any device; moved batch by batch to the model's device).
    labeled_mask : Tensor of shape (N,), bool
    labels : Tensor of shape (N,), int64, optional
        Required when ``needs`` contains ``"labels"``.
    needs : iterable of str
        Fields the sampler reads, usually ``sampler.needs`` (checked against the fields a view can
        hold). Probabilities and embeddings come out of every pass and are always returned.
    batch_size : int, default=512
    device : torch.device or str, optional
        Where the returned tensors live; default: the model's device.

    Returns
    -------
    PoolView
        float32 ``probs`` (softmax of the logits) and ``embeddings``.
    """
    needs = frozenset(needs)
    if not needs <= FIELDS:
        raise ValueError(f"unknown fields {sorted(needs - FIELDS)} in needs; valid: {sorted(FIELDS)}")
    if "labels" in needs and labels is None:
        raise ValueError("labels are needed (needs contains 'labels') but none were given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if x.shape[0] == 0:
        raise ValueError("the pool is empty")
    embeddings, logits = model_outputs(model, x, batch_size=batch_size, device=device)
    return PoolView(probs=torch.softmax(logits, dim=1), embeddings=embeddings,
                    labeled_mask=labeled_mask.to(embeddings.device),
                    labels=None if labels is None else labels.to(embeddings.device))


def model_outputs(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512,
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features and logits of ``model`` over ``x``, in batches, eval mode, no gradients.

    The model must expose ``embed(x) -> (B, D)`` and ``head(z) -> (B, C)``; it runs on the device of its
    parameters and its training mode is restored afterwards.

    Returns
    -------
    embeddings : Tensor of shape (N, D), float32
    logits : Tensor of shape (N, C), float32
        Both on ``device`` (default: the model's).
    """
    param = next(model.parameters(), None)
    model_device = param.device if param is not None else torch.device("cpu")
    out_device = torch.device(device) if device is not None else model_device
    n = x.shape[0]
    logits = embeddings = None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                z = model.embed(x[start:start + batch_size].to(model_device)).float()
                out = model.head(z).float()
                if logits is None:
                    logits = torch.empty(n, out.shape[1], device=out_device)
                    embeddings = torch.empty(n, z.shape[1], device=out_device)
                logits[start:start + len(z)] = out
                embeddings[start:start + len(z)] = z
    finally:
        model.train(was_training)
    return embeddings, logits
