"""Warn before a run whose training is too short to learn, and say so when accuracy ends at chance.

The measure is the distance plain SGD can travel in one cycle: ``reach = sum over SGD steps of the step's lr``
for a client holding the median initial labeled set (steps = local passes x ceil(n / batch_size), per FedAvg round
with its lr decay; for the non-federated bounds, ``alone_epochs`` passes). Calibrated on the bundled digits with
the reference CNN (``examples/configs/fairfal_digits.toml``, one cycle): reach 0.08 gave 10 % test accuracy
(chance), 0.12 gave 21 %, 0.25 gave 36 %, 0.49 gave 70 %; on Fashion-MNIST-LT (the reduced FairFAL schedule,
``examples/configs/fairfal_fmnist_lt_alpha0.1_reduced.toml``) reach 0.246 gave 51 %. Below ``MIN_REACH``, where
digits stayed at chance, a warning names the keys to raise.
Momentum is left out (the same for every config of a comparison), so read the threshold as a rule of thumb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .config import ExperimentConfig

MIN_REACH = 0.12
"""lr-weighted SGD steps per cycle below which a warning is given."""
CHANCE_MARGIN = 1.5
"""A final accuracy below CHANCE_MARGIN / number of classes is reported as near chance."""


def sgd_reach(config: ExperimentConfig, n: int, federated: bool = True) -> tuple[int, float]:
    """(SGD steps, sum of their learning rates) of one cycle's training of a client holding ``n`` labeled samples.

    Federated strategies: ``training.rounds`` rounds of ``local_epochs`` passes, the lr times ``lr_decay`` from
    round ceil(lr_decay_at x rounds) on; the bounds: ``alone_epochs`` passes with the same decay over epochs.
    """
    t = config.training
    per_pass = max(1, math.ceil(n / t.batch_size) - (1 if n % t.batch_size == 1 and n > t.batch_size else 0))
    phases, per_phase = (t.rounds, t.local_epochs) if federated else (t.effective_alone_epochs, 1)
    decay_from = math.ceil(t.lr_decay_at * phases)
    steps = phases * per_phase * per_pass
    reach = per_phase * per_pass * t.lr * (decay_from + (phases - decay_from) * t.lr_decay)
    return steps, reach


def short_training_warning(config: ExperimentConfig, labeled_sizes: Sequence[int], num_classes: int,
                           federated: bool) -> str | None:
    """The warning text when the first cycle's training reaches less than ``MIN_REACH``, else None."""
    sizes = sorted(n for n in labeled_sizes if n > 0)
    if not sizes:
        return None
    n = sizes[len(sizes) // 2]
    steps, reach = sgd_reach(config, n, federated)
    if reach >= MIN_REACH:
        return None
    schedule = ("training.rounds x local_epochs" if federated else "training.alone_epochs") + " x ceil(n / batch_size)"
    return (f"training: a client with the median initial labeled set ({n} samples) takes {steps} SGD steps per cycle "
            f"({schedule}) at lr {config.training.lr:g}: lr x steps = {reach:.3f} < {MIN_REACH}. Training this short "
            f"usually leaves the model near chance accuracy ({100 / num_classes:.0f} % for {num_classes} classes); "
            "raise training.rounds (--rounds), training.local_epochs or training.lr, or lower training.batch_size")


def chance_note(accuracy: float, num_classes: int) -> str | None:
    """A note when ``accuracy`` is within ``CHANCE_MARGIN`` of chance (1 / num_classes), else None."""
    if accuracy >= CHANCE_MARGIN / num_classes:
        return None
    return (f"final accuracy {100 * accuracy:.1f} % is near chance ({100 / num_classes:.1f} % for {num_classes} "
            "classes): the model did not learn; more training rounds, local epochs or a "
            "larger lr usually fix it")
