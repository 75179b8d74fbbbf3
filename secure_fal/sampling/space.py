"""Point sets and squared Euclidean distances, dense or Kronecker-factored (BADGE).

The BADGE gradient embedding of a sample is ``g = e ⊗ r`` with ``e`` (D,) its penultimate feature
and ``r = onehot(argmax p) - p`` (C,). Because ``<a ⊗ b, c ⊗ d> = <a, c> <b, d>``, distances between
gradient embeddings follow from two small matrix products, ``(E E'^T) * (R R'^T)``, without ever
building the (N, D * C) matrix: :class:`FeatureSpace` does that, and treats dense points the same way.
"""

from __future__ import annotations

import torch

from .base import PoolView

_CHUNK_ELEMENTS = 1 << 22
"""Distance blocks hold at most this many entries (16 MiB in float32) to bound memory."""


class FeatureSpace:
    """M points, stored densely as ``x`` (M, F) or factored as rows ``a_i ⊗ b_i``.

    Build with :meth:`dense` or :meth:`kron`; all methods return tensors on the points' device.
    Squared distances use ``|x|² - 2 <x, y> + |y|²`` (clamped at 0), fused with the products.

    Attributes
    ----------
    sq_norms : Tensor of shape (M,)
        Squared Euclidean norm of every point.
    """

    def __init__(self, factors: tuple[torch.Tensor, ...], sq_norms: torch.Tensor | None = None) -> None:
        self._factors = factors
        if sq_norms is None:
            sq_norms = (factors[0] * factors[0]).sum(dim=1)
            if len(factors) == 2:
                sq_norms = sq_norms * (factors[1] * factors[1]).sum(dim=1)
        self.sq_norms = sq_norms

    @classmethod
    def dense(cls, x: torch.Tensor) -> FeatureSpace:
        """Points given as the rows of ``x``, shape (M, F)."""
        return cls((x,))

    @classmethod
    def kron(cls, a: torch.Tensor, b: torch.Tensor) -> FeatureSpace:
        """Points ``a_i ⊗ b_i`` for ``a`` of shape (M, F1) and ``b`` of shape (M, F2)."""
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"factors have {a.shape[0]} and {b.shape[0]} rows")
        return cls((a, b))

    def __len__(self) -> int:
        return self._factors[0].shape[0]

    def rows(self, index: torch.Tensor) -> FeatureSpace:
        """The points ``index`` (int64 tensor on the points' device), in that order."""
        return FeatureSpace(tuple(f[index] for f in self._factors), self.sq_norms[index])

    def sq_dists_to(self, j: torch.Tensor) -> torch.Tensor:
        """Squared distances from every point to point ``j`` (int64 tensor of shape (1,)), shape (M,).

        One matrix-vector product per factor; ``j`` stays on the device (no synchronisation)."""
        prod = self._factors[0] @ self._factors[0][j][0]
        if len(self._factors) == 2:
            prod = prod * (self._factors[1] @ self._factors[1][j][0])
        return torch.add(self.sq_norms, prod, alpha=-2.0).add_(self.sq_norms[j]).clamp_min_(0.0)

    def nearest(self, other: FeatureSpace) -> tuple[torch.Tensor, torch.Tensor]:
        """For each point, the squared distance to and index of its nearest point of ``other``.

        Computed in row blocks of at most ``2**22`` distances. ``other`` must not be empty and be
        stored like ``self`` (both dense or both factored the same way).

        Returns
        -------
        sq_dist : Tensor of shape (len(self),)
        index : Tensor of shape (len(self),), int64, first minimiser on ties
        """
        if len(other) == 0:
            raise ValueError("nearest() needs at least one reference point")
        if len(self._factors) != len(other._factors):
            raise ValueError("cannot compare a dense and a factored point set")
        step = max(1, _CHUNK_ELEMENTS // len(other))
        values, indices = [], []
        for s in range(0, len(self), step):
            blocks = [f[s:s + step] for f in self._factors]
            # min_j |y_j|² - 2 <x, y_j>, then + |x|² (constant along the row)
            if len(blocks) == 1:
                scores = torch.addmm(other.sq_norms[None, :], blocks[0], other._factors[0].T, alpha=-2.0)
            else:
                scores = torch.addcmul(other.sq_norms[None, :], blocks[0] @ other._factors[0].T,
                                       blocks[1] @ other._factors[1].T, value=-2.0)
            best = scores.min(dim=1)
            values.append((best.values + self.sq_norms[s:s + step]).clamp_min_(0.0))
            indices.append(best.indices)
        if not values:
            empty = self.sq_norms.new_empty(0)
            return empty, empty.long()
        return torch.cat(values), torch.cat(indices)


def badge_residuals(probs: torch.Tensor) -> torch.Tensor:
    """``onehot(argmax p) - p``, shape (N, C): the class factor of the BADGE gradient embedding."""
    onehot = torch.zeros_like(probs).scatter_(1, probs.argmax(dim=1, keepdim=True), 1.0)
    return onehot - probs


def badge_grad_embeddings(probs: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Materialised BADGE gradient embeddings ``e ⊗ (onehot(argmax p) - p)``.

    This is minus the gradient of the cross-entropy at the predicted label with respect to the weight
    of a linear head ``logits = W e + b`` (the bias part is left out, as in BADGE).

    Parameters
    ----------
    probs : Tensor of shape (N, C)
    embeddings : Tensor of shape (N, D)

    Returns
    -------
    Tensor of shape (N, D * C), with ``g[:, d * C + c] = embeddings[:, d] * residual[:, c]``
    """
    r = badge_residuals(probs)
    return (embeddings[:, :, None] * r[:, None, :]).flatten(1)


def gradient_space(pool: PoolView) -> FeatureSpace:
    """BADGE gradient embeddings of the whole pool in exact factored form: ``pool.embeddings`` times
    the residuals of ``pool.grad_probs`` (``pool.probs`` when None) at their predicted class."""
    probs = pool.probs if pool.grad_probs is None else pool.grad_probs
    return FeatureSpace.kron(pool.embeddings, badge_residuals(probs))


def labeled_gradient_space(pool: PoolView, index: torch.Tensor) -> FeatureSpace:
    """Gradient embeddings of the labeled samples ``index`` at their TRUE label:
    ``e ⊗ (onehot(y) - p)``, ``p`` from ``pool.grad_probs`` (``pool.probs`` when None). The FairFAL
    reference (``get_grad_embedding_v2``) embeds its k-center anchors this way."""
    probs = (pool.probs if pool.grad_probs is None else pool.grad_probs)[index]
    onehot = torch.zeros_like(probs).scatter_(1, pool.labels[index][:, None], 1.0)
    return FeatureSpace.kron(pool.embeddings[index], onehot - probs)


def segment_sum(values: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Sum of the rows of ``values`` per segment, in float64 on the CPU so that it is deterministic
    (floating-point ``index_add_`` on CUDA is not).

    Parameters
    ----------
    values : Tensor of shape (M, F)
    segment : Tensor of shape (M,), int64 in [0, n_segments)
    n_segments : int

    Returns
    -------
    Tensor of shape (n_segments, F), float64, on ``values.device``
    """
    out = torch.zeros(n_segments, values.shape[1], dtype=torch.float64)
    out.index_add_(0, segment.cpu(), values.detach().to("cpu", torch.float64))
    return out.to(values.device)
