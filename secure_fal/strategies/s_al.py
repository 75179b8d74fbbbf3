"""S-AL (Ahn et al., 2022): client-level separated active learning."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Cycle, Evaluation, Selection, Strategy, select_locally


class SAL(Strategy):
    """Each client trains a model alone on its labeled data and selects with it; no federation during AL.

    Reported accuracy (as in Ahn et al.): that of a FedAvg model trained on the union of the labels the
    clients chose, i.e. what federating the separately collected labels achieves.
    """

    name = "s-al"

    def train(self, cycle: Cycle, labeled: Sequence[np.ndarray]) -> Evaluation:
        self._local = [self._alone_model(cycle, lab, k) for k, lab in enumerate(labeled)]
        federated = self._federated_model(cycle, labeled)
        self._mark_trained(cycle)
        return Evaluation(self.trainer.accuracy(federated, self.pools.x_test, self.pools.y_test))

    def select(self, cycle: Cycle, labeled: Sequence[np.ndarray], budgets: Sequence[int]) -> Selection:
        self._check_trained(cycle)
        picks = select_locally(self.sampler, lambda k: self._local[k], self.pools, cycle, labeled, budgets,
                               batch_size=self.trainer.inference_batch_size)
        return Selection(picks)
