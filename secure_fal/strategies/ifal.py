"""IFAL (Zong, Jin, Huang, IJCAI 2025, "Inconsistency-Based Federated Active Learning").

Follows the authors' code, chenchenzong/IFAL commit 39c3989 (``query_strategies/fal/ifal.py``, ``strategy.py``,
``main.py``). On client k, after FedAvg, three models look at its pool: the global model g, the client's own
model of the last FedAvg round l (``FinalLocalsStrategy``), and a model kd trained from scratch on k's labeled
set by distillation from g (``train_distilled``: loss 0.1 * CE + 0.9 * T² KL at T = 4, SGD at 0.1 x the lr, at
most 10 x ``training.alone_epochs`` epochs (the reference: 500 = 10 x its 50 local-only epochs), stop after 5
epochs without a lower mean loss).

1. Reverse-kNN class votes (``reverse_knn_votes``): in a model's L2-normalised feature space, every labeled and
   unlabeled sample votes, with a label, for its ``neighbours`` (250) most cosine-similar unlabeled samples
   (itself excluded); an unlabeled sample's votes per class, plus one, normalised, form a distribution. Labels
   are the true ones for labeled samples and a model's predictions for unlabeled ones.
   g1: g's space, g's labels; l1: l's space, g's labels; l2: l's space, l's labels; kd1: kd's space, g's labels.
2. Distances ``value_wasserstein`` (scipy's ``wasserstein_distance`` as the reference calls it: between the C
   values of two vectors taken as samples, not between distributions over classes):
   D_ll = W(l1, kd1), D_gl = W(g1, kd1); U1 = max(D_gl / (D_ll + 1e-5), D_ll / (D_gl + 1e-5)) * (D_ll + D_gl);
   U2 = W(l2, softmax of l). U = U1 * U2.
3. Choice (``ifal_choice``): candidates = samples with U above its Otsu threshold (``otsu_threshold``, 256
   bins, as scikit-image's ``threshold_otsu``); k-means with min(b, candidates) clusters on their l features,
   one sample per cluster (the closest to its centre). If that gives fewer than b, the same with U1 alone; if
   still fewer, the b samples of largest U.

Only FedAvg updates cross a client boundary; the three models, votes and scores stay on the client.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..federated import SGDConfig, train_distilled
from ..sampling import model_outputs
from ..sampling.base import top_indices
from .base import ClientPools, Cycle, FinalLocalsStrategy
from .local_kmeans import kmeans_fit
from .training import Trainer

NEIGHBOURS = 250
OTSU_BINS = 256
DISTILL = {"temperature": 4.0, "ce_weight": 0.1, "patience": 5, "epochs_factor": 10, "lr_factor": 0.1}
"""The reference's ``training_local_only_KD`` settings; its 500 epochs are 10 x its local-only 50."""


def reverse_knn_votes(labeled: torch.Tensor, unlabeled: torch.Tensor, row_labels: torch.Tensor, num_classes: int,
                      neighbours: int = NEIGHBOURS) -> torch.Tensor:
    """Class distribution of each unlabeled sample from the labels of the samples that count it as a neighbour.

    Args:
        labeled: (L, D), unlabeled: (U, D) features (L2-normalised here).
        row_labels: int (L + U,) the label each row votes with: labeled rows first, then unlabeled ones.
        neighbours: k; at most U are used.
    Returns:
        (U, C) float64: (1 + votes of class c) / sum over classes.
    """
    rows = F.normalize(torch.cat([labeled, unlabeled]).double(), dim=1)
    targets = rows[len(labeled):]
    similarity = rows @ targets.T
    own = torch.arange(len(targets))
    similarity[len(labeled) + own, own] = -1.0
    k = min(neighbours, len(targets))
    nearest = similarity.topk(k, dim=1).indices                          # (L + U, k)
    onehot = F.one_hot(row_labels.long(), num_classes).double()
    votes = torch.ones(len(targets), num_classes, dtype=torch.float64)
    votes.index_add_(0, nearest.reshape(-1), onehot.repeat_interleave(k, dim=0))
    return votes / votes.sum(dim=1, keepdim=True)


def value_wasserstein(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise 1-Wasserstein distance between the empirical distributions of the values of a[i] and of b[i]
    (equal lengths C): the mean absolute difference of the sorted values. (M, C), (M, C) -> (M,)."""
    return (torch.sort(a.double(), dim=1).values - torch.sort(b.double(), dim=1).values).abs().mean(dim=1)


def otsu_threshold(values: np.ndarray, bins: int = OTSU_BINS) -> float:
    """Otsu's threshold of ``values``: the histogram bin centre (``bins`` equal bins over [min, max]) splitting
    them into two classes of largest between-class variance; the value itself if all values are equal."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if np.all(values == values[0]):
        return float(values[0])
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1]                     # weight of the class at or below each cut
    above = len(values) - below
    mean_below = np.cumsum(counts * centres)[:-1] / np.maximum(below, 1)
    mean_above = (np.sum(counts * centres) - np.cumsum(counts * centres)[:-1]) / np.maximum(above, 1)
    between = below * above * (mean_below - mean_above) ** 2
    return float(centres[int(np.argmax(between))])


def cluster_representatives(points: np.ndarray, n: int, seed: int) -> np.ndarray:
    """k-means with ``n`` clusters on ``points`` (M, D); per cluster, in cluster order, the member closest to
    its centre (clusters without members are skipped). Returns int64 positions, at most n."""
    fit = kmeans_fit(points, n, seed)
    assigned = fit.predict(np.asarray(points, dtype=np.float64))
    sq = ((points - fit.cluster_centers_[assigned]) ** 2).sum(axis=1)
    picks = [members[np.argmin(sq[members])] for members in (np.flatnonzero(assigned == j) for j in range(n))
             if len(members)]
    return np.asarray(picks, dtype=np.int64)


def ifal_choice(u1: np.ndarray, u2: np.ndarray, features: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Positions IFAL picks from the scores U1, U2 (M,) and the local model's normalised features (M, D)."""
    for scores in (u1 * u2, u1):
        candidates = np.flatnonzero(scores > otsu_threshold(scores))
        if len(candidates):
            picks = candidates[cluster_representatives(features[candidates], min(budget, len(candidates)), seed)]
            if len(picks) >= budget:
                return picks
    return top_indices(torch.as_tensor(u1 * u2), budget).numpy()


class IFAL(FinalLocalsStrategy):
    """FedAvg; then each client labels, among the samples where its models disagree most (reverse-kNN votes
    under the global, last-round local and distilled models), one per k-means cluster. Selects by its own rule
    (no sampler); reported accuracy: the global model's.

    Args:
        neighbours: reverse-kNN neighbourhood size (default 250, the reference's).
    """

    name = "ifal"

    def __init__(self, pools: ClientPools, trainer: Trainer, sampler: None = None, *,
                 neighbours: int = NEIGHBOURS) -> None:
        super().__init__(pools, trainer, sampler)
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        self.neighbours = neighbours

    def choose(self, cycle: Cycle, client: int, labeled: np.ndarray, unlabeled: np.ndarray,
               budget: int) -> np.ndarray:
        x, batch = self.pools.pool_inputs(client), self.trainer.inference_batch_size
        lab = np.flatnonzero(self.pools.labeled_mask(client, labeled).numpy())
        y = self.pools.pool_labels(client, labeled)[lab]
        outputs = {name: model_outputs(model, x, batch_size=batch, device="cpu") for name, model in (
            ("g", self._model), ("l", self.final_local(client)), ("kd", self._distilled(cycle, labeled, client)))}

        def votes(space: str, labels_of: str) -> torch.Tensor:
            feats = outputs[space][0]
            row_labels = torch.cat([y, outputs[labels_of][1][unlabeled].argmax(dim=1)])
            return reverse_knn_votes(feats[lab], feats[unlabeled], row_labels, self.pools.num_classes,
                                     self.neighbours)

        g1, l1, l2, kd1 = votes("g", "g"), votes("l", "g"), votes("l", "l"), votes("kd", "g")
        d_ll, d_gl = value_wasserstein(l1, kd1), value_wasserstein(g1, kd1)
        u1 = torch.maximum(d_gl / (d_ll + 1e-5), d_ll / (d_gl + 1e-5)) * (d_ll + d_gl)
        u2 = value_wasserstein(l2, torch.softmax(outputs["l"][1][unlabeled].double(), dim=1))
        features = F.normalize(outputs["l"][0][unlabeled].double(), dim=1).numpy()
        return ifal_choice(u1.numpy(), u2.numpy(), features, budget, cycle.seed_for("ifal-kmeans", client))

    def _distilled(self, cycle: Cycle, labeled: np.ndarray, client: int) -> torch.nn.Module:
        """A fresh model trained on the client's labeled set by distillation from the global model."""
        x, y = self.pools.labeled_data(labeled)
        student = self.trainer.fresh_model(cycle.seed_for("init"))
        sgd = self.trainer.fedavg.sgd
        train_distilled(student, self._model, x, y, max_epochs=DISTILL["epochs_factor"] * self.trainer.alone_epochs,
                        sgd=SGDConfig(sgd.lr * DISTILL["lr_factor"], sgd.momentum, sgd.weight_decay, sgd.batch_size),
                        temperature=DISTILL["temperature"], ce_weight=DISTILL["ce_weight"],
                        patience=DISTILL["patience"], seed=cycle.seed_for("ifal-distill", client),
                        device=self.trainer.device)
        return student
