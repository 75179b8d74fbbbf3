"""KAFAL (Cao et al., ICCV 2023): knowledge-specialized active sampling (KSAS).

Sampling follows the authors' code, ycao5602/KAFAL commit f4f1875, ``main.py`` (``get_discrepancy``). Training
is the plain FedAvg of every other method here, as in the FairFAL authors' benchmark reimplementation
(chenchenzong/IFAL commit 39c3989, ``query_strategies/fal/ksas.py``), which queries with each client's own model
of the last FedAvg round; the original paper's compensatory training loss (KCFU) is not part of that baseline
and not implemented.

On client k with labeled class counts n_c (of its labeled set), for every unlabeled x, with l the client's local
model of the last round (``FinalLocalsStrategy``) and g the global model, both logits shifted by log n_c
("intensified specialized knowledge"):

    score(x) = (KL(p_g || p_l) + KL(p_l || p_g)) / 2,    p_m = softmax(logits_m(x) + log n)

and the b samples of largest score are labeled (ties to the lower pool position). Classes with n_c = 0 get
probability 0 under both models and contribute nothing (the reference adds log 0 = -inf and its KL then
evaluates 0 * inf, NaN, for them; dropping them is the limit of a vanishing count).

Only FedAvg updates cross a client boundary; the local model, scores and counts stay on the client.
"""

from __future__ import annotations

import numpy as np
import torch

from ..sampling import model_outputs
from ..sampling.base import top_indices
from .base import Cycle, FinalLocalsStrategy


def specialized_discrepancy(local_logits: torch.Tensor, global_logits: torch.Tensor,
                            class_counts: torch.Tensor) -> torch.Tensor:
    """KSAS score: symmetric KL between the two models' class-count-shifted softmaxes, over present classes.

    Args:
        local_logits, global_logits: (M, C) logits.
        class_counts: (C,) labeled samples per class on the client (at least one positive).
    Returns:
        (M,) float64 scores >= 0.
    """
    present = class_counts > 0
    shift = torch.log(class_counts[present].double())
    log_l = torch.log_softmax(local_logits[:, present].double() + shift, dim=1)
    log_g = torch.log_softmax(global_logits[:, present].double() + shift, dim=1)
    p_l, p_g = log_l.exp(), log_g.exp()
    return 0.5 * ((p_g * (log_g - log_l)).sum(dim=1) + (p_l * (log_l - log_g)).sum(dim=1))


class KAFAL(FinalLocalsStrategy):
    """FedAvg; then each client labels the samples on which its own last-round model and the global model,
    both shifted by its labeled class counts, disagree most (KSAS). Selects by its own rule (no sampler);
    reported accuracy: the global model's."""

    name = "kafal"

    def choose(self, cycle: Cycle, client: int, labeled: np.ndarray, unlabeled: np.ndarray,
               budget: int) -> np.ndarray:
        x, batch = self.pools.pool_inputs(client)[unlabeled], self.trainer.inference_batch_size
        counts = torch.bincount(self.pools.labeled_data(labeled)[1], minlength=self.pools.num_classes)
        _, local_logits = model_outputs(self.final_local(client), x, batch_size=batch, device="cpu")
        _, global_logits = model_outputs(self._model, x, batch_size=batch, device="cpu")
        return top_indices(specialized_discrepancy(local_logits, global_logits, counts), budget).numpy()
