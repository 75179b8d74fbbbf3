"""Batched inference that turns a model and a pool of inputs into a :class:`PoolView`."""

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
    n = x.shape[0]
    if n == 0:
        raise ValueError("the pool is empty")
    param = next(model.parameters(), None)
    model_device = param.device if param is not None else torch.device("cpu")
    out_device = torch.device(device) if device is not None else model_device

    probs = embeddings = None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                z = model.embed(x[start:start + batch_size].to(model_device)).float()
                p = torch.softmax(model.head(z).float(), dim=1)
                if probs is None:
                    probs = torch.empty(n, p.shape[1], device=out_device)
                    embeddings = torch.empty(n, z.shape[1], device=out_device)
                stop = start + len(z)
                probs[start:stop] = p
                embeddings[start:stop] = z
    finally:
        model.train(was_training)
    return PoolView(probs=probs, embeddings=embeddings, labeled_mask=labeled_mask.to(out_device),
                    labels=None if labels is None else labels.to(out_device))
