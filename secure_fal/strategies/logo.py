"""LoGo (Kim et al., CVPR 2023): local clustering for diversity, global uncertainty within each cluster.

Follows the authors' code, raymin0223/LoGo commit 536e8cb, ``query_strategies/fal/logo.py`` (the FairFAL paper
runs it as a baseline). On client k, after FedAvg, with budget b:

1. Macro step: a local-only model (trained on k's labeled set alone, ``Trainer.alone``: the reference's
   ``training_local_only``) embeds every unlabeled sample by its gradient block at the predicted class,
   e(x) * (1 - max_c p(x)) (the reference's ``get_grad_embedding_maxInd``; D values, not D * C); k-means with b
   clusters on these (``local_kmeans``).
2. Micro step: in each cluster, the sample of highest entropy under the GLOBAL model.
3. When fewer than b clusters are non-empty (k-means on duplicated points), the rest is filled round-robin
   over the clusters in cluster order, each giving its next most uncertain sample (the reference fills in
   batches and then truncates a set, whose order is arbitrary; this fill is its deterministic form).

Only FedAvg updates cross a client boundary (through the Aggregator); the local model, embeddings and
clusters stay on the client.
"""

from __future__ import annotations

import numpy as np
import torch

from ..sampling import entropy_score, model_outputs
from .base import Cycle, OwnRuleStrategy
from .local_kmeans import kmeans_fit


def predicted_class_gradients(embeddings: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """LoGo's clustering space: e(x) * (1 - max_c p(x)), the gradient block of the predicted class.

    Args:
        embeddings: (M, D) penultimate features; probs: (M, C) softmax, both of the local-only model.
    Returns:
        (M, D).
    """
    return embeddings * (1.0 - probs.max(dim=1).values)[:, None]


def logo_choice(clusters: np.ndarray, uncertainty: np.ndarray, budget: int) -> np.ndarray:
    """Positions picked by LoGo's micro step and its fill-up.

    Args:
        clusters: int (M,) cluster of each candidate, in [0, budget).
        uncertainty: (M,) global-model uncertainty of each candidate (larger: more uncertain).
        budget: b <= M.
    Returns:
        int64 (b,) distinct positions: per cluster (in cluster order) its most uncertain member, then, while
        short of b, round after round the next most uncertain member of each cluster that has one. Ties go to
        the lower position.
    """
    ranked = [members[np.argsort(-uncertainty[members], kind="stable")]
              for members in (np.flatnonzero(clusters == j) for j in range(budget))]
    picks: list[int] = []
    depth = 0
    while len(picks) < budget:
        for members in ranked:
            if depth < len(members) and len(picks) < budget:
                picks.append(int(members[depth]))
        depth += 1
    return np.asarray(picks, dtype=np.int64)


class LoGo(OwnRuleStrategy):
    """FedAvg; then each client clusters its pool with its local-only model and picks, per cluster, the sample
    the global model is least sure of. Selects by its own rule (no sampler); reported accuracy: the global
    model's."""

    name = "logo"

    def choose(self, cycle: Cycle, client: int, labeled: np.ndarray, unlabeled: np.ndarray,
               budget: int) -> np.ndarray:
        x, batch = self.pools.pool_inputs(client)[unlabeled], self.trainer.inference_batch_size
        local = self._alone_model(cycle, labeled, client)
        embeddings, logits = model_outputs(local, x, batch_size=batch, device="cpu")
        points = predicted_class_gradients(embeddings.double(), torch.softmax(logits.double(), dim=1))
        clusters = kmeans_fit(points.numpy(), budget, cycle.seed_for("logo-kmeans", client)).labels_
        _, global_logits = model_outputs(self._model, x, batch_size=batch, device="cpu")
        return logo_choice(clusters, entropy_score(torch.softmax(global_logits.double(), dim=1)).numpy(), budget)
