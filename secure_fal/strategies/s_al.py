"""S-AL (Ahn et al., 2022): client-level separated active learning."""

from __future__ import annotations

import numpy as np
from torch import nn

from .base import Cycle, LocalQueryStrategy


class SAL(LocalQueryStrategy):
    """Each client trains a model alone on its labeled data and selects with it; no federation during AL.

    Reported accuracy (as in Ahn et al.): that of a FedAvg model trained on the union of the labels the
    clients chose, i.e. what federating the separately collected labels achieves.
    """

    name = "s-al"

    def query_model(self, cycle: Cycle, client: int, labeled: np.ndarray) -> nn.Module:
        return self._alone_model(cycle, labeled, client)
