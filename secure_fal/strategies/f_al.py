"""F-AL (Ahn et al., 2022): after the federation, every client selects with the global model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Cycle, GlobalModelStrategy, Selection, select_locally


class FAL(GlobalModelStrategy):
    """FedAvg trains the global model; each client runs the sampler on its own pool with that model.

    Reported accuracy: the global model's. Selection is client-local; only FedAvg updates cross a client
    boundary (securely aggregated).
    """

    name = "f-al"

    def select(self, cycle: Cycle, labeled: Sequence[np.ndarray], budgets: Sequence[int]) -> Selection:
        self._check_trained(cycle)
        picks = select_locally(self.sampler, lambda k: self._model, self.pools, cycle, labeled, budgets,
                               batch_size=self.trainer.inference_batch_size)
        return Selection(picks)
