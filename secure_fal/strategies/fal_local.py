"""FAL-Local (Abraham, Dataiku): the global model, fine-tuned on the client's labeled data, selects."""

from __future__ import annotations

import numpy as np
from torch import nn

from ..sampling import Sampler
from .base import ClientPools, Cycle, LocalQueryStrategy
from .training import Trainer


class FALLocal(LocalQueryStrategy):
    """FedAvg trains the global model; client k fine-tunes a copy on its labeled set and selects with it.

    Reported accuracy: the global model's (the fine-tuned copies never leave their client).

    Args:
        finetune_epochs: epochs of local fine-tuning at the base learning rate, >= 0 (default 5).
    """

    name = "fal-local"

    def __init__(self, pools: ClientPools, trainer: Trainer, sampler: Sampler, *, finetune_epochs: int = 5) -> None:
        super().__init__(pools, trainer, sampler)
        if finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {finetune_epochs}")
        self.finetune_epochs = finetune_epochs

    def query_model(self, cycle: Cycle, client: int, labeled: np.ndarray) -> nn.Module:
        x, y = self.pools.labeled_data(labeled)
        return self.trainer.finetune(self._model, x, y, epochs=self.finetune_epochs,
                                     seed=cycle.seed_for("finetune", client))
