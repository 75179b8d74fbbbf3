"""From a config to the objects a run needs: the clients' data, the trainer, the strategy, the budgets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..data import (dirichlet_balanced_split, dirichlet_split, homogeneous_split, kmeans_split, load_dataset,
                    long_tail_indices, shot_noise)
from ..device import get_device
from ..federated import FedAvgConfig, SGDConfig
from ..models import build_model, check_model
from ..plugins import is_plugin
from ..sampling import get_sampler
from ..secagg import Aggregator, CostTotals, Faults, PrivacySession
from ..secagg.weighted import power_of_two_above
from ..strategies import ClientPools, Strategy, Trainer, derive_seed, get_strategy
from .config import ConfigError, ExperimentConfig


def _data_seed(config: ExperimentConfig, purpose: str) -> int:
    """A seed for the data functions (NumPy / scikit-learn accept at most 32 bits)."""
    return derive_seed(config.seed, purpose) % 2**32


def build_pools(config: ExperimentConfig) -> ClientPools:
    """Load the dataset, apply the long tail, split among clients, corrupt the chosen client.

    Order (SPEC): long-tail subsampling of the train set first (test set untouched), then the split, then shot
    noise on every sample of ``data.corrupted_client``.
    """
    cfg = config.data
    data = load_dataset(cfg.dataset, root=cfg.root, download=cfg.download)
    x, y = data.x_train, data.y_train
    if cfg.rho is not None:
        keep = torch.as_tensor(long_tail_indices(y, cfg.rho, seed=_data_seed(config, "long-tail"),
                                                 num_classes=data.num_classes))
        x, y = x[keep], y[keep]
    if cfg.clients > len(y):
        raise ConfigError(f"data.clients: {cfg.clients} clients for {len(y)} train samples")
    seed = _data_seed(config, "split") if cfg.split_seed is None else cfg.split_seed
    if cfg.split == "homogeneous":
        parts = homogeneous_split(y, cfg.clients, seed)
    elif cfg.split == "dirichlet-balanced":
        parts = dirichlet_balanced_split(y, cfg.clients, cfg.alpha, seed)
    elif cfg.split == "dirichlet":
        parts = dirichlet_split(y, cfg.clients, cfg.alpha, seed)
    else:
        parts = kmeans_split(x, y, cfg.clients, seed)
    if cfg.corrupted_client is not None:
        x = shot_noise(x, parts[cfg.corrupted_client], data.mean, data.std, photons=cfg.photons,
                       seed=_data_seed(config, "shot-noise"))
    return ClientPools(x, y, tuple(parts), data.x_test, data.y_test, data.num_classes)


def build_trainer(config: ExperimentConfig, pools: ClientPools, train_size: int | None = None) -> Trainer:
    """Model factory and training schedules from ``config.training`` and ``config.device``. FedAvg's weight total
    is the smallest power of two >= the train-set size (``train_size``, default the pools' ``len(pools.y)``):
    public, and no labeled total exceeds it."""
    t = config.training
    in_channels, image_size = int(pools.x.shape[1]), int(pools.x.shape[2])
    options = dict(t.model_options)
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])

    def make_model() -> torch.nn.Module:
        return build_model(t.model, in_channels, image_size, pools.num_classes, **options)

    try:
        model = make_model()
    except TypeError as exc:
        raise ConfigError(f"training.model_options: {exc}") from None
    if is_plugin(t.model):
        check_model(model, pools.x[:2], pools.num_classes, f"training.model {t.model!r}")
    _check_batch_norm_batches(config, model, pools)
    fedavg = FedAvgConfig(rounds=t.rounds, local_epochs=t.local_epochs,
                          sgd=SGDConfig(t.lr, t.momentum, t.weight_decay, t.batch_size),
                          lr_decay_at=t.lr_decay_at, lr_decay=t.lr_decay, update_bound=t.update_bound,
                          weight_total=power_of_two_above(len(pools.y) if train_size is None else train_size))
    return Trainer(make_model, fedavg, t.effective_alone_epochs, get_device(config.device),
                   alone_schedule=t.alone_schedule)


def _check_batch_norm_batches(config: ExperimentConfig, model: torch.nn.Module, pools: ClientPools) -> None:
    """A model with BatchNorm cannot train on one sample: refuse a split that leaves a client a single one."""
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    single = [k for k, pool in enumerate(pools.pools) if len(pool) == 1]
    if single:
        raise ConfigError(f"data.clients: {config.data.clients} clients for {len(pools.y)} train samples leave "
                          f"{len(single)} client(s) (first: client {single[0]}) a single sample, and the "
                          f"{config.training.model} model's BatchNorm cannot train on a batch of one; use fewer "
                          "clients (--clients)" + (" or a larger data.alpha" if config.data.split == "dirichlet" else ""))


def build_strategy(config: ExperimentConfig, pools: ClientPools, trainer: Trainer) -> Strategy:
    """The configured strategy with its sampler and options."""
    cls = get_strategy(config.active.strategy)
    name = config.active.sampler_name
    try:
        sampler = None if name is None else get_sampler(name, **config.active.sampler_options)
    except TypeError as exc:
        raise ConfigError(f"active.sampler_options: {exc}") from None
    return cls(pools, trainer, sampler, **config.strategy_options())


class ReferencedAggregator(Aggregator):
    """An Aggregator that also sums every input once more under the plaintext protocol, to measure what the
    secure protocol costs relative to plaintext aggregation of the very same sums.

    After each secure round, the inputs of the round's contributors (the clients whose input is in the secure
    result) are summed by a plaintext session with the same clients, bound, clipping and fixed-point precision,
    without faults. The secure result is returned unchanged; the plaintext round's costs accumulate in
    ``reference_totals`` (bytes exact, seconds measured like the secure round's: time inside the parties'
    state machines, transport excluded). The reference round's own wall time is not part of ``totals``.
    """

    def __init__(self, protocol, clients, **kwargs) -> None:
        super().__init__(protocol, clients, **kwargs)
        self.reference = Aggregator("plaintext", clients, frac_bits=self.frac_bits, seed=self.session)

    @property
    def reference_totals(self) -> CostTotals:
        """Bytes and seconds of the plaintext rounds that mirror this session's rounds."""
        return self.reference.totals

    def sum(self, inputs, *, bound, clip=False, faults=None, statistic=None, sum_bound=None):
        result = super().sum(inputs, bound=bound, clip=clip, faults=faults, statistic=statistic, sum_bound=sum_bound)
        self.reference.sum({cid: inputs[cid] for cid in result.contributors}, bound=bound, clip=clip,
                           sum_bound=sum_bound)
        return result


def build_aggregator(config: ExperimentConfig, n_clients: int, cycle: int,
                     fault_plan: Callable[[int], Faults | None] | None = None, *,
                     plaintext_reference: bool = False, privacy: PrivacySession | None = None) -> Aggregator:
    """The secure-aggregation session of one cycle (a new session per cycle, seeded by (seed, cycle)); the
    optional ``fault_plan`` (round id -> Faults) injects faults into its sums. With ``plaintext_reference``
    the session is a ``ReferencedAggregator`` (every sum repeated under plaintext to measure its cost). ``privacy``:
    the run's differential-privacy session (``experiment.privacy.build_privacy``), shared by every cycle."""
    cls = ReferencedAggregator if plaintext_reference else Aggregator
    try:
        return cls(config.secure.protocol, range(n_clients), frac_bits=config.secure.frac_bits,
                   seed=derive_seed(config.seed, "secagg", cycle), fault_plan=fault_plan, privacy=privacy,
                   **config.secure.options)
    except TypeError as exc:
        raise ConfigError(f"secure.options: {exc}") from None


def cycle_budget(config: ExperimentConfig, n_train: int) -> int:
    """Global number of samples labeled per cycle: ``active.budget``, or from ``query_fraction`` by
    ``active.budget_rule``.

    - "reference" (the FairFAL / LoGo ``main.py``): n_query = round(N, -2) * fraction, each of the K clients
      labels int(n_query / K), so the budget is K * int(n_query / K) (FMNIST-LT, N = 20,428, fraction 0.05,
      K = 10: 1020, 102 per client). Python's round, as the reference (halves to even).
    - "exact": round(fraction * N) (FMNIST-LT: 1021), split with the remainder to the lowest ids.
    """
    a = config.active
    if a.budget is not None:
        budget = a.budget
    elif a.budget_rule == "reference":
        k = config.data.clients
        budget = k * int(round(n_train, -2) * a.query_fraction / k)
    else:
        budget = int(round(a.query_fraction * n_train))
    if budget < 1:
        raise ConfigError(f"active.query_fraction: {a.query_fraction} of {n_train} train samples is a budget of 0")
    return budget


def initial_labeled(pools: ClientPools, fraction: float, seed: int) -> list[np.ndarray]:
    """Random initial labeled set per client: max(2, round(fraction * n_k)) of its pool (at most n_k).

    At least two samples, so that BatchNorm can train on the client's first batch. Client k's draw uses a
    generator seeded by (seed, "initial", k).
    """
    out = []
    for k, pool in enumerate(pools.pools):
        n = min(len(pool), max(2, int(round(fraction * len(pool)))))
        rng = np.random.default_rng(derive_seed(seed, "initial", k))
        out.append(np.sort(rng.choice(pool, size=n, replace=False)).astype(np.int64))
    return out


def split_budget(total: int, available: Sequence[int]) -> list[int]:
    """Split a global budget across clients: evenly, the remainder one each to the lowest ids, each share
    capped at the client's unlabeled count and the excess handed out again (lowest ids first) to clients with
    room left. The shares sum to min(total, sum(available)).
    """
    k = len(available)
    shares = [min(total // k + (1 if i < total % k else 0), int(available[i])) for i in range(k)]
    left = min(total, int(sum(available))) - sum(shares)
    while left > 0:
        for i in range(k):
            if left and shares[i] < available[i]:
                shares[i] += 1
                left -= 1
    return shares
