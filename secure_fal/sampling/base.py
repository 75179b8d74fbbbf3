"""The pool description every sampler reads, and the sampler base class.

Conventions shared by all samplers:

* Every tensor of a :class:`PoolView` lives on one device; samplers compute there.
* Randomness comes only from the ``generator`` passed to :meth:`Sampler.select`, which must be a
  CPU ``torch.Generator``: random numbers are drawn on the CPU and moved, so the same seed gives
  the same draws on every device.
* Ties are broken towards the lower pool index (stable sorts, first ``argmax``), so a selection is
  a pure function of the pool, the budget and the generator state.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import ClassVar

import torch

FIELDS = frozenset({"probs", "embeddings", "labels"})
"""Names a sampler may list in :attr:`Sampler.needs` (the fields of :class:`PoolView`)."""


@dataclass(frozen=True)
class PoolView:
    """What a client's model says about its pool, for one selection.

    Parameters
    ----------
    probs : Tensor of shape (N, C), floating
        Softmax output of the query model, C >= 2.
    embeddings : Tensor of shape (N, D), floating
        Penultimate features ``model.embed(x)``.
    labeled_mask : Tensor of shape (N,), bool
        True where the sample is already labeled; samplers never return these.
    labels : Tensor of shape (N,), int64, optional
        Class labels; only entries where ``labeled_mask`` is True are read.
    grad_probs : Tensor of shape (N, C), floating, optional
        Softmax output of the model whose probabilities enter the BADGE gradient embeddings
        ``e ⊗ (onehot - p)`` (see :mod:`secure_fal.sampling.space`), when that is not the model of
        ``probs``; None: ``probs``. FairFAL takes uncertainty from its query model but the gradient
        probabilities from the model its second switch names.
    """

    probs: torch.Tensor
    embeddings: torch.Tensor
    labeled_mask: torch.Tensor
    labels: torch.Tensor | None = None
    grad_probs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        p, e, m, y, g = self.probs, self.embeddings, self.labeled_mask, self.labels, self.grad_probs
        if p.ndim != 2 or p.shape[1] < 2 or not p.is_floating_point():
            raise ValueError(f"probs must be a floating (N, C) tensor with C >= 2, got {_desc(p)}")
        n, c = p.shape
        if e.ndim != 2 or e.shape[0] != n or not e.is_floating_point():
            raise ValueError(f"embeddings must be a floating ({n}, D) tensor, got {_desc(e)}")
        if m.shape != (n,) or m.dtype != torch.bool:
            raise ValueError(f"labeled_mask must be a bool ({n},) tensor, got {_desc(m)}")
        if y is not None and (y.shape != (n,) or y.dtype != torch.long):
            raise ValueError(f"labels must be an int64 ({n},) tensor, got {_desc(y)}")
        if g is not None and (g.shape != (n, c) or not g.is_floating_point()):
            raise ValueError(f"grad_probs must be a floating ({n}, {c}) tensor, got {_desc(g)}")
        for name in ("embeddings", "labeled_mask", "labels", "grad_probs"):
            t = getattr(self, name)
            if t is not None and t.device != p.device:
                raise ValueError(f"{name} is on {t.device} but probs on {p.device}; put the pool on one device")

    @property
    def device(self) -> torch.device:
        """Device of every tensor of the pool."""
        return self.probs.device

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        return self.probs.shape[1]

    def unlabeled_indices(self) -> torch.Tensor:
        """Increasing pool indices of the unlabeled samples, int64 of shape (N_unlabeled,)."""
        return torch.nonzero(~self.labeled_mask).flatten()

    def labeled_indices(self) -> torch.Tensor:
        """Increasing pool indices of the labeled samples, int64 of shape (N_labeled,)."""
        return torch.nonzero(self.labeled_mask).flatten()


class Sampler:
    """Base class: picks ``budget`` distinct unlabeled samples of a :class:`PoolView`.

    Subclasses set :attr:`name` and :attr:`needs` and implement :meth:`_select`; :meth:`select`
    validates its arguments once for all of them.
    """

    name: ClassVar[str]
    """Registry name, e.g. ``"margin"``."""
    needs: ClassVar[frozenset[str]] = frozenset()
    """Fields of :class:`PoolView` read by the sampler (a subset of :data:`FIELDS`); ``probs`` and
    ``embeddings`` are always present, ``labels`` must be given if listed."""

    def select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        """Choose samples to label.

        Parameters
        ----------
        pool : PoolView
        budget : int
            Number of samples to return, 0 <= budget <= number of unlabeled samples.
        generator : torch.Generator
            CPU generator, the only source of randomness (deterministic samplers ignore it).

        Returns
        -------
        Tensor of shape (budget,), int64, on ``pool.device``
            Distinct pool indices, none of them labeled.
        """
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            raise ValueError("generator must be a CPU torch.Generator (draws are made on the CPU and moved, "
                             "so that a seed selects the same samples on every device)")
        if "labels" in self.needs and pool.labels is None:
            raise ValueError(f"sampler {self.name!r} needs pool.labels (labels of the labeled samples)")
        if isinstance(budget, bool) or not isinstance(budget, Integral) or budget < 0:
            raise ValueError(f"budget must be a non-negative int, got {budget!r}")
        budget = int(budget)
        n_unlabeled = int((~pool.labeled_mask).sum())
        if budget > n_unlabeled:
            raise ValueError(f"budget {budget} exceeds the {n_unlabeled} unlabeled samples of the pool")
        if budget == 0:
            return torch.empty(0, dtype=torch.long, device=pool.device)
        return self._select(pool, budget, generator)

    def _select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        """Selection proper; arguments are already validated and ``1 <= budget <= N_unlabeled``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _desc(t: torch.Tensor) -> str:
    return f"{t.dtype} of shape {tuple(t.shape)}"


def top_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, largest first, ties to the lower index.

    Parameters
    ----------
    scores : Tensor of shape (M,)
    k : int, 0 <= k <= M

    Returns
    -------
    Tensor of shape (k,), int64
    """
    return torch.sort(scores, descending=True, stable=True).indices[:k]
