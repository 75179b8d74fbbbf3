"""F-AL (Ahn et al., 2022): after the federation, every client selects with the global model."""

from __future__ import annotations

import numpy as np
from torch import nn

from .base import Cycle, LocalQueryStrategy


class FAL(LocalQueryStrategy):
    """FedAvg trains the global model; each client runs the sampler on its own pool with that model.

    Reported accuracy: the global model's. Selection is client-local; only FedAvg updates cross a client
    boundary (securely aggregated).
    """

    name = "f-al"

    def query_model(self, cycle: Cycle, client: int, labeled: np.ndarray) -> nn.Module:
        return self._model
