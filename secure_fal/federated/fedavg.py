"""Federated averaging whose only cross-client step is a secure weighted mean.

Each round, every participating client starts from the global model, runs local SGD epochs on its own
labeled data, and submits its DELTA (local - global) for every floating-point entry of the model's
state: parameters and BatchNorm running means/variances. The server obtains

    global += sum_k n_k * delta_k / sum_k n_k        over the clients k that contributed,

with n_k the client's sample count, through ``Aggregator.weighted_mean``: one secure sum of the vectors
[n_k * delta_k / T, n_k / T] (T: the public weight total, a power of two >= sum_k n_k, so the ring holds
``update_bound`` whatever the number of clients: ``secagg/weighted.py``), so numerator and denominator cover the
same surviving clients. A client that drops
out of the aggregation round is simply not in the average. This module never learns which protocol runs.

Deltas are small, so a tight public bound ``update_bound`` on every |delta| keeps the fixed-point ring
small; an update beyond it raises InputError (naming client, round and state entry) instead of being
clipped silently. Under differential privacy (the aggregator has a ``privacy`` session) each update is clipped to
the L2 bound ``privacy.clip_norm`` instead, the mean is unweighted, and BatchNorm running variances are clamped
to >= ``RUNNING_VAR_FLOOR`` after the noised mean.

Integer buffers (BatchNorm's ``num_batches_tracked``) are not aggregated: the global model keeps its own
value. The counter only matters for BatchNorm with ``momentum=None`` (a cumulative average), which
``train_federated`` rejects.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..secagg import Aggregator, Faults, InputError, Statistic
from .local import SGDConfig, evaluate, train_local

ClientData = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class FedAvgConfig:
    """FedAvg settings; defaults are the reference ones (SPEC) except ``rounds`` and the bounds.

    Attributes:
        rounds: federation rounds R.
        local_epochs: local passes over each client's data per round.
        sgd: local optimiser settings (lr 0.01, momentum 0.9, weight decay 1e-5, batch 64).
        lr_decay_at: fraction of R after which the lr is multiplied by ``lr_decay``: rounds
            r >= ceil(lr_decay_at * R) (0-based) use lr * lr_decay (R = 100: the last 25 rounds).
        lr_decay: lr factor after the decay point.
        update_bound: public bound on |local - global| of every parameter and float buffer after one round of
            local training. Measured: the reference CNN's first round on 2,000 FMNIST-LT samples (5 epochs,
            lr 0.01) moves weights by at most 0.23 and BatchNorm running statistics by at most 2.3; the
            default 64 leaves a wide margin and keeps the ring at 31 bits for any number of clients at frac_bits
            24 (``secagg/weighted.py``). ``RoundRecord.max_abs_update`` reports the largest |delta| seen.
        weight_bound: public bound on a client's sample count n_k. None: the smallest power of two >= the
            largest client's count (a power of two so that the bound does not disclose the exact size).
        weight_total: T, public power of two >= the participants' total sample count (the experiments: the
            smallest one >= the train-set size, as the Flower server knows it). None: the smallest power of two >=
            the participants' total of the round.
        eval_batch_size: batch size for test-set evaluation.
    """

    rounds: int = 100
    local_epochs: int = 5
    sgd: SGDConfig = field(default_factory=SGDConfig)
    lr_decay_at: float = 0.75
    lr_decay: float = 0.1
    update_bound: float = 64.0
    weight_bound: float | None = None
    weight_total: float | None = None
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.local_epochs < 0:
            raise ValueError(f"need rounds >= 1 and local_epochs >= 0, got {self.rounds}, {self.local_epochs}")
        if not (self.update_bound > 0 and 0 <= self.lr_decay_at <= 1):
            raise ValueError("need update_bound > 0 and lr_decay_at in [0, 1]")

    def lr_at(self, round_index: int) -> float:
        """Learning rate of round ``round_index`` (0-based)."""
        decayed = round_index >= math.ceil(self.lr_decay_at * self.rounds)
        return self.sgd.lr * (self.lr_decay if decayed else 1.0)


@dataclass
class RoundRecord:
    """What happened in one FedAvg round.

    Attributes:
        round: 1-based round number.
        lr: local learning rate used.
        participants: client ids asked to train and contribute.
        contributors: client ids whose update is in the new global model (the Aggregator's verdict).
        test_accuracy: global model's accuracy on the test set after the round (None without a test set).
        test_loss: its mean cross-entropy (None without a test set).
        max_abs_update: largest |delta| over the participants' updates (a simulator diagnostic for choosing
            ``update_bound``; a deployment would not reveal it).
        train_seconds: wall time of all local training in the round (clients run one after another here).
        train_loss: mean cross-entropy of the participants' last local epoch, weighted by their sample counts (a
            simulator diagnostic, like ``max_abs_update``).
        aggregation_seconds: CPU seconds inside the secure-sum state machines (server + all clients).
        aggregation_bytes: bytes that crossed the network in the secure sum.
    """

    round: int
    lr: float
    participants: tuple[int, ...]
    contributors: tuple[int, ...]
    test_accuracy: float | None
    test_loss: float | None
    max_abs_update: float
    train_seconds: float
    aggregation_seconds: float
    aggregation_bytes: int
    train_loss: float | None = None


@dataclass
class TrainResult:
    """The trained global model, one RoundRecord per round and, when asked for, the clients' last local models.

    Attributes:
        final_locals: client id -> its local model after its local training in the LAST round (before
            aggregation), for every participant of that round; empty unless ``keep_final_locals``. KAFAL and
            IFAL query with it; it never leaves its client.
    """

    model: nn.Module
    history: list[RoundRecord]
    final_locals: dict[int, nn.Module] = field(default_factory=dict)

    @property
    def final_accuracy(self) -> float | None:
        return self.history[-1].test_accuracy if self.history else None


class StateVector:
    """Flattens the floating-point entries of a model's state_dict to one float64 vector and back.

    Attributes:
        names: the state_dict keys included, in order (parameters and float buffers).
        offsets: start index of each entry in the vector; the last element is the total length.
    """

    def __init__(self, model: nn.Module) -> None:
        state = model.state_dict()
        self.names = [k for k, t in state.items() if t.is_floating_point()]
        sizes = [state[k].numel() for k in self.names]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def length(self) -> int:
        return int(self.offsets[-1])

    def get(self, model: nn.Module) -> np.ndarray:
        """(length,) float64 copy of the model's floating-point state."""
        state = model.state_dict()
        return torch.cat([state[k].detach().reshape(-1).to("cpu", torch.float64) for k in self.names]).numpy()

    def set(self, model: nn.Module, vector: np.ndarray) -> None:
        """Write ``vector`` into the model's floating-point state (each entry cast to its own dtype)."""
        state = model.state_dict()
        with torch.no_grad():
            for i, k in enumerate(self.names):
                chunk = torch.from_numpy(vector[self.offsets[i]:self.offsets[i + 1]])
                state[k].copy_(chunk.reshape(state[k].shape).to(state[k].dtype))

    def name_at(self, index: int) -> str:
        """The state entry holding vector position ``index``."""
        return self.names[int(np.searchsorted(self.offsets, index, side="right")) - 1]


def client_seed(seed: int, round_index: int, cid: int) -> int:
    """Seed of client ``cid``'s local training in round ``round_index`` (0-based) of a run seeded ``seed``
    (non-negative ints): a 63-bit value from NumPy's SeedSequence, distinct streams per (seed, round, client)."""
    return int(np.random.SeedSequence([seed, round_index, cid]).generate_state(1, np.uint64)[0] >> 1)


UPDATE_STATISTIC = Statistic("fedavg-update")
"""The FedAvg sum's declaration: its L2 bound is the run's ``privacy.clip_norm``."""

RUNNING_VAR_FLOOR = 0.1
"""Under differential privacy, the smallest BatchNorm running variance the global model keeps."""


def valid_running_vars(model: nn.Module) -> None:
    """Clamp BatchNorm running variances to >= ``RUNNING_VAR_FLOOR``: a noised (differentially private) mean can push
    them to 0 or below, and evaluation then divides by about sqrt(eps) per layer (logits overflow after a few
    rounds); the floor caps that amplification at 1 / sqrt(0.1) ~ 3.2 per layer. Post-processing of the released
    sum, so no privacy cost."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
                module.running_var.clamp_(min=RUNNING_VAR_FLOOR)


def _check_model(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.momentum is None:
            raise ValueError(f"BatchNorm {name!r} uses momentum=None (cumulative average); FedAvg here does not "
                             "aggregate num_batches_tracked, so give it a momentum")


def train_federated(model: nn.Module, clients: Sequence[ClientData], aggregator: Aggregator,
                    config: FedAvgConfig = FedAvgConfig(), *, test: ClientData | None = None,
                    device: torch.device | str = "cpu", seed: int = 0,
                    participants: Sequence[int] | Callable[[int], Sequence[int]] | None = None,
                    faults: Callable[[int], Faults | None] | None = None,
                    progress: Callable[[RoundRecord], None] | None = None,
                    keep_final_locals: bool = False) -> TrainResult:
    """Train ``model`` (in place; it is the global model) with FedAvg over ``clients``.

    Args:
        model: initial global model (seed the global RNG before building it for reproducible runs).
        clients: client k's labeled data (x (n_k, ...), y (n_k,) int64); client ids are the list indices.
        aggregator: the secure-aggregation session; its client ids must include every participant.
        config: rounds, local training and bounds.
        test: held-out (x, y) evaluated after every round.
        device: where training runs; ``model`` ends up there.
        seed: seeds each client's shuffling per round (one generator per round and client).
        participants: client ids taking part every round, or a function round (0-based) -> ids.
            Default: every client with at least one sample.
        faults: optional function round (0-based) -> fault plan for that round's secure sum (tests, benchmarks).
        progress: called with each RoundRecord as soon as its round ends.
        keep_final_locals: keep a copy of every participant's local model of the last round
            (``TrainResult.final_locals``).
    Returns:
        TrainResult(model, history[, final_locals]). Same seed, data, model initialisation and thread count on CPU give
        bit-identical weights.
    Raises:
        InputError: a client's update exceeds ``config.update_bound`` (names client, aggregation round and
            state entry), or no participant contributed.
    """
    _check_model(model)
    device = torch.device(device)
    model.to(device)
    layout = StateVector(model)
    sizes = [len(y) for _, y in clients]
    for k, (x, y) in enumerate(clients):
        if len(x) != len(y):
            raise ValueError(f"client {k}: {len(x)} inputs but {len(y)} labels")
    weight_bound = config.weight_bound or float(2 ** math.ceil(math.log2(max(max(sizes), 1))))
    worker = copy.deepcopy(model)
    history: list[RoundRecord] = []
    final_locals: dict[int, nn.Module] = {}

    for r in range(config.rounds):
        if participants is None:
            ids = [k for k, n in enumerate(sizes) if n > 0]
        else:
            ids = list(participants(r) if callable(participants) else participants)
        ids = sorted(set(ids))
        missing = [k for k in ids if k not in aggregator.clients or not 0 <= k < len(clients)]
        if missing:
            raise ValueError(f"round {r + 1}: client {missing[0]} has no data or is not in the aggregation "
                             f"session (clients: {list(aggregator.clients)})")
        empty = [k for k in ids if sizes[k] == 0]
        if empty:
            raise ValueError(f"round {r + 1}: client {empty[0]} was asked to train but holds no samples")

        lr = config.lr_at(r)
        sgd = SGDConfig(lr, config.sgd.momentum, config.sgd.weight_decay, config.sgd.batch_size)
        global_vec = layout.get(model)
        deltas: dict[int, np.ndarray] = {}
        losses: dict[int, float] = {}
        started = time.perf_counter()
        for k in ids:
            worker.load_state_dict(model.state_dict())
            x, y = clients[k]
            losses[k] = train_local(worker, x, y, epochs=config.local_epochs, sgd=sgd, seed=client_seed(seed, r, k),
                                    device=device)
            delta = layout.get(worker) - global_vec
            worst = int(np.argmax(np.abs(delta)))
            if not abs(delta[worst]) <= config.update_bound and aggregator.privacy is None:
                raise InputError(f"FedAvg round {r + 1}: update {delta[worst]!r} exceeds update_bound "
                                 f"{config.update_bound} (raise FedAvgConfig.update_bound or lower the lr)",
                                 client=k, round_id=aggregator.round_id + 1, field=layout.name_at(worst))
            deltas[k] = delta
            if keep_final_locals and r == config.rounds - 1:
                final_locals[k] = copy.deepcopy(worker)
        train_seconds = time.perf_counter() - started

        mean_delta, _, res = aggregator.weighted_mean(
            deltas, {k: float(sizes[k]) for k in ids}, bound=config.update_bound, weight_bound=weight_bound,
            weight_total=config.weight_total, faults=faults(r) if faults else None,
            statistic=UPDATE_STATISTIC)
        layout.set(model, global_vec + mean_delta)
        if aggregator.privacy is not None:
            valid_running_vars(model)

        acc = loss = None
        if test is not None:
            acc, loss = evaluate(model, test[0], test[1], batch_size=config.eval_batch_size, device=device)
        report = res.report
        record = RoundRecord(
            round=r + 1, lr=lr, participants=tuple(ids), contributors=res.contributors, test_accuracy=acc,
            test_loss=loss, max_abs_update=float(max(np.max(np.abs(d)) for d in deltas.values())),
            train_seconds=train_seconds,
            aggregation_seconds=report.server_total_seconds + sum(report.client_total_seconds(c)
                                                                  for c in report.clients),
            aggregation_bytes=report.total_bytes,
            train_loss=float(sum(sizes[k] * losses[k] for k in ids) / sum(sizes[k] for k in ids)))
        history.append(record)
        if progress is not None:
            progress(record)
    return TrainResult(model, history, final_locals)
