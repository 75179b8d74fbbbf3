"""What a FAL strategy is given, what it returns, and the base class every strategy derives from.

A strategy does two things per active-learning cycle, always in this order:

1. ``train(cycle, labeled)``: train a FRESH model (or models) its own way on the clients' labeled data and
   report the test accuracy of the cycle;
2. ``select(cycle, labeled, budgets)``: with the models of step 1, choose the samples each client labels next.

The runner (``secure_fal.experiment.runner``) owns the labeled sets, the oracle and the checkpoints; a strategy
keeps only what it must carry from cycle to cycle (``state_dict``, e.g. FairFAL's gamma_bar). Every statistic
that crosses a client boundary goes through ``cycle.aggregator`` (``secure_fal.secagg.Aggregator``); a strategy
never learns which protocol runs underneath.

Index conventions: the train set has N samples; client k's pool is ``pools.pools[k]``, a sorted int64 array of
train indices. Labeled sets and selections are arrays of TRAIN indices (not pool positions).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..federated import RoundRecord, TrainResult
from ..sampling import Sampler, pool_view
from ..secagg import Aggregator
from .training import Trainer


def derive_seed(seed: int, *path: int | str) -> int:
    """A 63-bit seed that depends only on ``seed`` and the ``path`` (e.g. ("select", cycle, client)).

    Strings are hashed (BLAKE2b), so the result is stable across processes and Python versions; this is what
    makes a resumed run draw exactly what an uninterrupted one draws.
    """
    words = [int(seed) % 2**64]
    for part in path:
        if isinstance(part, str):
            words.append(int.from_bytes(hashlib.blake2b(part.encode(), digest_size=8).digest(), "little"))
        else:
            words.append(int(part) % 2**64)
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class ClientPools:
    """The federation's data as a simulator holds it: every client's pool, the oracle's labels, the test set.

    Attributes:
        x: float (N, C, H, W) train inputs (after any long-tail subsampling and corruption).
        y: int64 (N,) train labels. This is the ORACLE: a strategy reads labels only at labeled indices (through
            ``labeled_data`` and ``pool_labels``).
        pools: client k -> sorted int64 array of the train indices it holds; disjoint.
        x_test: float (M, C, H, W) test inputs; y_test: int64 (M,) test labels.
        num_classes: C.
    """

    x: torch.Tensor
    y: torch.Tensor
    pools: tuple[np.ndarray, ...]
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def n_clients(self) -> int:
        return len(self.pools)

    def labeled_data(self, labeled: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of the given train indices (a client's labeled set, or a union of them)."""
        idx = torch.as_tensor(np.asarray(labeled, dtype=np.int64))
        return self.x[idx], self.y[idx]

    def labeled_mask(self, client: int, labeled: np.ndarray) -> torch.Tensor:
        """bool (n_k,) over client k's pool: True at the positions of its labeled train indices."""
        return torch.as_tensor(np.isin(self.pools[client], labeled))

    def pool_labels(self, client: int, labeled: np.ndarray) -> torch.Tensor:
        """int64 (n_k,) over client k's pool: the label where labeled, -1 elsewhere (unknown to the client)."""
        mask = self.labeled_mask(client, labeled)
        out = torch.full((len(self.pools[client]),), -1, dtype=torch.long)
        out[mask] = self.y[torch.as_tensor(self.pools[client])][mask]
        return out

    def pool_inputs(self, client: int) -> torch.Tensor:
        """float (n_k, C, H, W): client k's pool."""
        return self.x[torch.as_tensor(self.pools[client])]


@dataclass
class Cycle:
    """One active-learning cycle as a strategy sees it.

    Attributes:
        index: 0-based cycle number.
        seed: the experiment seed; every random draw of the cycle comes from ``seed_for``.
        aggregator: the secure-aggregation session of this cycle (None for the non-federated bounds).
        on_round: called after each FedAvg round (progress display), or None.
    """

    index: int
    seed: int
    aggregator: Aggregator | None
    on_round: Callable[[RoundRecord], None] | None = None

    def seed_for(self, purpose: str, client: int | None = None) -> int:
        """Seed of one random draw: derived from (experiment seed, purpose, cycle[, client])."""
        path: tuple[int | str, ...] = (purpose, self.index) if client is None else (purpose, self.index, client)
        return derive_seed(self.seed, *path)

    def generator(self, purpose: str, client: int | None = None) -> torch.Generator:
        """A CPU torch.Generator seeded with ``seed_for(purpose, client)`` (what samplers draw from)."""
        return torch.Generator().manual_seed(self.seed_for(purpose, client))

    def require_aggregator(self, strategy: str) -> Aggregator:
        if self.aggregator is None:
            raise ValueError(f"strategy {strategy!r} aggregates across clients and needs an Aggregator "
                             f"(cycle {self.index})")
        return self.aggregator


@dataclass
class Evaluation:
    """Test accuracy of one cycle.

    Attributes:
        accuracy: the strategy's reported test accuracy in [0, 1].
        client_accuracies: per-client test accuracy where the strategy has one model per client (client-alone),
            else None.
        loss: mean test cross-entropy of the reported model(s), or None.
        class_accuracies: per class, the reported model's accuracy on the test samples of that class (None for a
            class absent from the test set), or None when not measured.
    """

    accuracy: float
    client_accuracies: list[float] | None = None
    loss: float | None = None
    class_accuracies: list[float | None] | None = None


@dataclass
class Selection:
    """Samples chosen in one cycle.

    Attributes:
        picks: client k -> int64 array of NEW train indices from its pool for the oracle to label.
        details: JSON-ready facts about the choice worth recording (e.g. FairFAL's model choice per client).
    """

    picks: list[np.ndarray]
    details: dict = field(default_factory=dict)


class Strategy(ABC):
    """Base class of the FAL strategies and bounds.

    Class attributes:
        name: registry name (``secure_fal.strategies.STRATEGIES``).
        federated: False for the bounds that never aggregate across clients (they get no Aggregator).
        default_sampler: sampler used when the configuration names none; None for the strategies that select
            by a rule of their own (the FairFAL paper's baselines) and take no sampler.
        samplers: sampler names the strategy accepts (None: any registered sampler).

    Args:
        pools: the federation's data.
        trainer: how models are built and trained.
        sampler: the client-local sampler (``secure_fal.sampling.get_sampler``); None exactly when
            ``default_sampler`` is None.
    """

    name: ClassVar[str]
    federated: ClassVar[bool] = True
    default_sampler: ClassVar[str | None] = "margin"
    samplers: ClassVar[frozenset[str] | None] = None

    def __init__(self, pools: ClientPools, trainer: Trainer, sampler: Sampler | None) -> None:
        if self.default_sampler is None and sampler is not None:
            raise ValueError(f"strategy {self.name!r} selects by its own rule and takes no sampler "
                             f"(got {sampler.name!r})")
        if self.default_sampler is not None and sampler is None:
            raise ValueError(f"strategy {self.name!r} needs a sampler")
        if sampler is not None and self.samplers is not None and sampler.name not in self.samplers:
            raise ValueError(f"strategy {self.name!r} cannot use sampler {sampler.name!r}; "
                             f"choose one of {sorted(self.samplers)}")
        self.pools = pools
        self.trainer = trainer
        self.sampler = sampler
        self._trained_cycle: int | None = None

    @abstractmethod
    def train(self, cycle: Cycle, labeled: Sequence[np.ndarray]) -> Evaluation:
        """Train this cycle's fresh model(s) on the labeled sets (client k -> train indices); evaluate."""

    @abstractmethod
    def select(self, cycle: Cycle, labeled: Sequence[np.ndarray], budgets: Sequence[int]) -> Selection:
        """Choose new samples with the models trained in ``train`` of the same cycle.

        ``budgets[k]`` is client k's share of the cycle's global budget (never more than its unlabeled count).
        Strategies with a per-client quota pick exactly ``budgets[k]`` samples on client k; the others spend
        ``sum(budgets)`` wherever they choose.
        """

    def state_dict(self) -> dict:
        """JSON-ready state carried from cycle to cycle (saved in the checkpoint). Default: none."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""
        if state:
            raise ValueError(f"strategy {self.name!r} keeps no state, got keys {sorted(state)}")

    def _federated(self, cycle: Cycle, labeled: Sequence[np.ndarray], *, keep_final_locals: bool = False
                   ) -> TrainResult:
        """FedAvg of a fresh model over every client's labeled set, through the cycle's aggregator."""
        clients = [self.pools.labeled_data(lab) for lab in labeled]
        return self.trainer.federated(clients, cycle.require_aggregator(self.name), init_seed=cycle.seed_for("init"),
                                      seed=cycle.seed_for("fedavg"), on_round=cycle.on_round,
                                      keep_final_locals=keep_final_locals)

    def _alone_model(self, cycle: Cycle, labeled: np.ndarray, client: int | None) -> nn.Module:
        """A fresh model trained without federation on ``labeled`` (client k's set, or the pooled one)."""
        x, y = self.pools.labeled_data(labeled)
        return self.trainer.alone(x, y, init_seed=cycle.seed_for("init"),
                                  seed=cycle.seed_for("alone", -1 if client is None else client))

    def reported_model(self) -> nn.Module | None:
        """The model whose test results the last ``train`` reported; None when it reported a mean of several."""
        return getattr(self, "_model", None)

    def _evaluate(self, model: nn.Module) -> Evaluation:
        """Accuracy, loss and per-class accuracy of ``model`` on the test set."""
        m = self.trainer.metrics(model, self.pools.x_test, self.pools.y_test, self.pools.num_classes)
        return Evaluation(m.accuracy, loss=m.loss, class_accuracies=m.class_accuracies)

    def _mark_trained(self, cycle: Cycle) -> None:
        self._trained_cycle = cycle.index

    def _check_trained(self, cycle: Cycle) -> None:
        if self._trained_cycle != cycle.index:
            raise RuntimeError(f"{self.name}: select() of cycle {cycle.index} called before train() of that cycle")


class GlobalModelStrategy(Strategy):
    """Base of the strategies whose model of the cycle is FedAvg's global model (kept as ``self._model``);
    the reported accuracy is the global model's."""

    def train(self, cycle: Cycle, labeled: Sequence[np.ndarray]) -> Evaluation:
        self.use_global_model(cycle, self._federated(cycle, labeled).model)
        return self._evaluate(self._model)

    def use_global_model(self, cycle: Cycle, model: nn.Module) -> None:
        """Take ``model`` as the global model of ``cycle``: what ``train`` does in-process, and what a client of a
        deployment does with the model the server broadcasts before it selects."""
        self._model = model
        self._mark_trained(cycle)


class ClientLocalStrategy(GlobalModelStrategy):
    """Base of the strategies in which every client selects alone (``select_on_client``) after FedAvg; nothing
    crosses a client boundary during selection."""

    def select(self, cycle: Cycle, labeled: Sequence[np.ndarray], budgets: Sequence[int]) -> Selection:
        return Selection([self.select_on_client(cycle, k, labeled[k], b) for k, b in enumerate(budgets)])

    @abstractmethod
    def select_on_client(self, cycle: Cycle, client: int, labeled: np.ndarray, budget: int) -> np.ndarray:
        """Client ``client``'s picks: ``budget`` int64 train indices of its pool, none of them in ``labeled``."""


class OwnRuleStrategy(ClientLocalStrategy):
    """Base of the client-local strategies that select by a rule of their own (``choose``) instead of a sampler:
    the FairFAL paper's baselines."""

    default_sampler = None

    def select_on_client(self, cycle: Cycle, client: int, labeled: np.ndarray, budget: int) -> np.ndarray:
        self._check_trained(cycle)
        if budget == 0:
            return np.empty(0, dtype=np.int64)
        unlabeled = np.flatnonzero(~self.pools.labeled_mask(client, labeled).numpy())
        return self.pools.pools[client][unlabeled[self.choose(cycle, client, labeled, unlabeled, budget)]]

    @abstractmethod
    def choose(self, cycle: Cycle, client: int, labeled: np.ndarray, unlabeled: np.ndarray,
               budget: int) -> np.ndarray:
        """``budget`` distinct positions into ``unlabeled`` (int64 positions of the client's unlabeled samples in
        its pool, increasing): the samples client ``client`` labels; 1 <= budget <= len(unlabeled)."""


class FinalLocalsStrategy(OwnRuleStrategy):
    """Base of the own-rule strategies that also query with each client's OWN model of the last FedAvg round
    (its local training of that round, before aggregation; ``final_local(client)``), as KAFAL and IFAL do."""

    def train(self, cycle: Cycle, labeled: Sequence[np.ndarray]) -> Evaluation:
        result = self._federated(cycle, labeled, keep_final_locals=True)
        self._final_locals = result.final_locals
        self.use_global_model(cycle, result.model)
        return Evaluation(self.trainer.accuracy(self._model, self.pools.x_test, self.pools.y_test))

    def use_final_local(self, client: int, model: nn.Module) -> None:
        """Take ``model`` as client ``client``'s local model of the last FedAvg round: what a client of a deployment
        does with the model it trained itself in that round (kept in its node state) before it selects."""
        self._final_locals = {**getattr(self, "_final_locals", {}), client: model}

    def final_local(self, client: int) -> nn.Module:
        """Client ``client``'s local model of the last round of this cycle's FedAvg."""
        try:
            return self._final_locals[client]
        except KeyError:
            raise RuntimeError(f"{self.name}: client {client} trained in no FedAvg round of this cycle "
                               "(an empty labeled set?)") from None


class LocalQueryStrategy(ClientLocalStrategy):
    """Base of the strategies in which every client selects alone, with a query model of its own choosing
    (``query_model``) and the sampler."""

    @abstractmethod
    def query_model(self, cycle: Cycle, client: int, labeled: np.ndarray) -> nn.Module:
        """The model client ``client`` (labeled set ``labeled``) selects with in ``cycle``."""

    def select_on_client(self, cycle: Cycle, client: int, labeled: np.ndarray, budget: int) -> np.ndarray:
        """Client ``client``'s picks (int64 train indices): ``budget`` samples of its pool by the sampler."""
        self._check_trained(cycle)
        return select_on_pool(self.sampler, lambda: self.query_model(cycle, client, labeled), self.pools, cycle,
                              client, labeled, budget, batch_size=self.trainer.inference_batch_size)


def select_on_pool(sampler: Sampler, model: Callable[[], nn.Module], pools: ClientPools, cycle: Cycle, client: int,
                   labeled: np.ndarray, budget: int, *, batch_size: int = 512) -> np.ndarray:
    """Client ``client`` selects ``budget`` samples of its own pool with the sampler and a query model.

    Args:
        model: returns the query model (called only when budget > 0).
        labeled: the client's labeled train indices.
    Returns:
        int64 array of the chosen train indices.
    """
    if budget == 0:
        return np.empty(0, dtype=np.int64)
    view = pool_view(model(), pools.pool_inputs(client), pools.labeled_mask(client, labeled),
                     pools.pool_labels(client, labeled), needs=sampler.needs, batch_size=batch_size)
    chosen = sampler.select(view, int(budget), cycle.generator("select", client))
    return pools.pools[client][chosen.cpu().numpy()]


def select_locally(sampler: Sampler, model_for: Callable[[int], nn.Module], pools: ClientPools, cycle: Cycle,
                   labeled: Sequence[np.ndarray], budgets: Sequence[int], *, batch_size: int = 512) -> list[np.ndarray]:
    """Every client selects ``budgets[k]`` samples of its own pool with its query model and the sampler.

    Args:
        model_for: client id -> the model that client queries with (called once per client with budget > 0).
        batch_size: inference batch size.
    Returns:
        client k -> int64 array of the chosen train indices.
    """
    return [select_on_pool(sampler, lambda k=k: model_for(k), pools, cycle, k, labeled[k], budget,
                           batch_size=batch_size) for k, budget in enumerate(budgets)]
