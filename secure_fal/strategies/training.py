"""How the strategies build and train their models: FedAvg, local-only training, fine-tuning, evaluation."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..federated import (EvalMetrics, FedAvgConfig, RoundRecord, SGDConfig, TrainResult, eval_metrics, evaluate,
                         train_federated, train_local)
from ..secagg import Aggregator


ALONE_SCHEDULES = ("reference", "fixed")
"""Schedules of the non-federated training (``Trainer.alone``)."""
STOP_ACCURACY = 0.99
"""Training accuracy at which the reference's local-only training stops (``training_local_only``)."""


@dataclass(frozen=True)
class Trainer:
    """Model factory and training schedules shared by every strategy of an experiment.

    Attributes:
        build_model: returns a new, randomly initialised model (``embed``/``head`` interface); its random
            draws come from torch's global RNG, which ``fresh_model`` seeds.
        fedavg: FedAvg settings (rounds, local epochs, SGD, lr decay, update bound).
        alone_epochs: (at most) epochs of every non-federated training (a client alone, the centralized bound,
            the local-only model of FairFAL and LoGo).
        device: where models train and run.
        inference_batch_size: batch size when a model scores a pool.
        alone_schedule: "reference" (the FairFAL / LoGo reference's ``training_local_only``): one SGD run that
            stops after the first epoch whose training accuracy (eval mode) is >= 0.99, the lr multiplied by
            ``fedavg.lr_decay`` after int(``fedavg.lr_decay_at`` * alone_epochs) optimiser STEPS (the
            reference steps its MultiStepLR milestone per batch: 37 batches for 50 epochs). "fixed": always
            ``alone_epochs`` epochs, the lr decayed from epoch ceil(lr_decay_at * alone_epochs) on (a fresh
            optimiser for the decayed phase), as FedAvg decays per round.
    """

    build_model: Callable[[], nn.Module]
    fedavg: FedAvgConfig
    alone_epochs: int
    device: torch.device
    inference_batch_size: int = 512
    alone_schedule: str = "reference"

    def __post_init__(self) -> None:
        if self.alone_schedule not in ALONE_SCHEDULES:
            raise ValueError(f"alone_schedule must be one of {ALONE_SCHEDULES}, got {self.alone_schedule!r}")

    def fresh_model(self, seed: int) -> nn.Module:
        """A new model initialised from ``seed`` (torch's global RNG state is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build_model()
        return model.to(self.device)

    def federated(self, clients: Sequence[tuple[torch.Tensor, torch.Tensor]], aggregator: Aggregator, *,
                  init_seed: int, seed: int, on_round: Callable[[RoundRecord], None] | None = None,
                  keep_final_locals: bool = False) -> TrainResult:
        """FedAvg from a fresh model (``init_seed``) over the clients' labeled data (x_k, y_k); with
        ``keep_final_locals`` the result also holds each client's local model of the last round."""
        model = self.fresh_model(init_seed)
        return train_federated(model, list(clients), aggregator, self.fedavg, device=self.device, seed=seed,
                               progress=on_round, keep_final_locals=keep_final_locals)

    def alone(self, x: torch.Tensor, y: torch.Tensor, *, init_seed: int, seed: int) -> nn.Module:
        """A fresh model (``init_seed``) trained on (x, y) alone under ``alone_schedule``."""
        model = self.fresh_model(init_seed)
        sgd, fed = self.fedavg.sgd, self.fedavg
        if self.alone_schedule == "reference":
            milestone = int(fed.lr_decay_at * self.alone_epochs)
            train_local(model, x, y, epochs=self.alone_epochs, sgd=sgd, seed=seed, device=self.device,
                        lr_at_step=lambda step: sgd.lr * (fed.lr_decay if step >= milestone else 1.0),
                        stop_accuracy=STOP_ACCURACY)
            return model
        decay_from = math.ceil(fed.lr_decay_at * self.alone_epochs)
        phases = [(decay_from, sgd.lr), (self.alone_epochs - decay_from, sgd.lr * fed.lr_decay)]
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
