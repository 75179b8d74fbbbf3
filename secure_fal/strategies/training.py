"""How the strategies build and train their models: FedAvg, local-only training, fine-tuning, evaluation."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..federated import (EvalMetrics, FedAvgConfig, RoundRecord, SGDConfig, eval_metrics, evaluate, train_federated,
                         train_local)
from ..secagg import Aggregator


@dataclass(frozen=True)
class Trainer:
    """Model factory and training schedules shared by every strategy of an experiment.

    Attributes:
        build_model: returns a new, randomly initialised model (``embed``/``head`` interface); its random
            draws come from torch's global RNG, which ``fresh_model`` seeds.
        fedavg: FedAvg settings (rounds, local epochs, SGD, lr decay, update bound).
        alone_epochs: epochs of every non-federated training (a client alone, the centralized bound,
            FairFAL's local-only model); the lr is multiplied by ``fedavg.lr_decay`` from epoch
            ceil(fedavg.lr_decay_at * alone_epochs) on, as FedAvg does with rounds.
        device: where models train and run.
        inference_batch_size: batch size when a model scores a pool.
    """

    build_model: Callable[[], nn.Module]
    fedavg: FedAvgConfig
    alone_epochs: int
    device: torch.device
    inference_batch_size: int = 512

    def fresh_model(self, seed: int) -> nn.Module:
        """A new model initialised from ``seed`` (torch's global RNG state is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build_model()
        return model.to(self.device)

    def federated(self, clients: Sequence[tuple[torch.Tensor, torch.Tensor]], aggregator: Aggregator, *,
                  init_seed: int, seed: int, on_round: Callable[[RoundRecord], None] | None = None) -> nn.Module:
        """FedAvg from a fresh model (``init_seed``) over the clients' labeled data (x_k, y_k)."""
        model = self.fresh_model(init_seed)
        train_federated(model, list(clients), aggregator, self.fedavg, device=self.device, seed=seed,
                        progress=on_round)
        return model

    def alone(self, x: torch.Tensor, y: torch.Tensor, *, init_seed: int, seed: int) -> nn.Module:
        """A fresh model (``init_seed``) trained on (x, y) alone for ``alone_epochs`` with the lr decay."""
        model = self.fresh_model(init_seed)
        sgd = self.fedavg.sgd
        decay_from = math.ceil(self.fedavg.lr_decay_at * self.alone_epochs)
        phases = [(decay_from, sgd.lr), (self.alone_epochs - decay_from, sgd.lr * self.fedavg.lr_decay)]
        for phase, (epochs, lr) in enumerate(phases):
            if epochs > 0:
                train_local(model, x, y, epochs=epochs, seed=(seed + phase) % 2**63, device=self.device,
                            sgd=SGDConfig(lr, sgd.momentum, sgd.weight_decay, sgd.batch_size))
        return model

    def finetune(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int) -> nn.Module:
        """A copy of ``model`` trained ``epochs`` more epochs on (x, y) at the base lr; ``model`` is untouched."""
        tuned = copy.deepcopy(model)
        train_local(tuned, x, y, epochs=epochs, sgd=self.fedavg.sgd, seed=seed, device=self.device)
        return tuned

    def metrics(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> EvalMetrics:
        """Accuracy, mean cross-entropy and per-class accuracy of ``model`` on (x, y)."""
        return eval_metrics(model, x, y, num_classes, batch_size=self.fedavg.eval_batch_size, device=self.device)

    def accuracy(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy in [0, 1] of ``model`` on (x, y)."""
        return evaluate(model, x, y, batch_size=self.fedavg.eval_batch_size, device=self.device)[0]
