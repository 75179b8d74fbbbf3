"""Federated training over the secure-aggregation interface (``secure_fal.secagg.Aggregator``)."""

from .fedavg import FedAvgConfig, RoundRecord, StateVector, TrainResult, client_seed, train_federated
from .local import SGDConfig, evaluate, train_local

__all__ = ["FedAvgConfig", "RoundRecord", "StateVector", "TrainResult", "client_seed", "train_federated",
           "SGDConfig", "evaluate", "train_local"]
