"""The two reference bounds of the FAL comparison (no federation, no secure aggregation).

- ``centralized`` (upper bound): all pools merged into one; one model trained on the pooled labeled data;
  active learning with the same sampler and the same global budget per cycle.
- ``client-alone`` (lower bound): each client trains and selects alone; accuracy is the mean over clients
  of their own models' test accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..sampling import pool_view
from .base import Cycle, Evaluation, Selection, Strategy, select_locally


class Centralized(Strategy):
    """One model on the pooled labeled data; the sampler picks ``sum(budgets)`` samples from the pooled pool.

    The picks are returned per owning client so that the runner's bookkeeping (labeled sets per client)
    stays the same as for the federated strategies; no client quota applies.
    """

    name = "centralized"
    federated = False

    def train(self, cycle: Cycle, labeled: Sequence[np.ndarray]) -> Evaluation:
        self._model = self._alone_model(cycle, np.concatenate(list(labeled)), None)
        self._mark_trained(cycle)
        return self._evaluate(self._model)

    def select(self, cycle: Cycle, labeled: Sequence[np.ndarray], budgets: Sequence[int]) -> Selection:
        self._check_trained(cycle)
        pooled = np.concatenate(self.pools.pools)
        order = np.argsort(pooled, kind="stable")
        pooled = pooled[order]
        owner = np.concatenate([np.full(len(p), k) for k, p in enumerate(self.pools.pools)])[order]
        all_labeled = np.concatenate(list(labeled))
        mask = torch.as_tensor(np.isin(pooled, all_labeled))
        labels = torch.full((len(pooled),), -1, dtype=torch.long)
        labels[mask] = self.pools.y[torch.as_tensor(pooled)][mask]
        view = pool_view(self._model, self.pools.x[torch.as_tensor(pooled)], mask, labels, needs=self.sampler.needs,
                         batch_size=self.trainer.inference_batch_size)
        chosen = self.sampler.select(view, int(sum(budgets)), cycle.generator("select")).cpu().numpy()
        picked, by = pooled[chosen], owner[chosen]
        return Selection([picked[by == k] for k in range(self.pools.n_clients)])


class ClientAlone(Strategy):
    """Each client trains alone and selects alone with its own model (S-AL without the federated evaluation).

    Reported accuracy: the mean over clients of their local models' test accuracy (each listed too).
    """

    name = "client-alone"
    federated = False

    def train(self, cycle: Cycle, labeled: Sequence[np.ndarray]) -> Evaluation:
        self._local = [self._alone_model(cycle, lab, k) for k, lab in enumerate(labeled)]
        self._mark_trained(cycle)
        local = [self._evaluate(m) for m in self._local]
        accs = [e.accuracy for e in local]
        per_class = [None if None in column else float(np.mean(column))
                     for column in zip(*(e.class_accuracies for e in local))]
        return Evaluation(float(np.mean(accs)), accs, float(np.mean([e.loss for e in local])), per_class)

    def select(self, cycle: Cycle, labeled: Sequence[np.ndarray], budgets: Sequence[int]) -> Selection:
        self._check_trained(cycle)
        picks = select_locally(self.sampler, lambda k: self._local[k], self.pools, cycle, labeled, budgets,
                               batch_size=self.trainer.inference_batch_size)
        return Selection(picks)
