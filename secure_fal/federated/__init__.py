"""Federated training over the secure-aggregation interface (``secure_fal.secagg.Aggregator``).

The names below are imported on first use (PEP 562), so that ``secure_fal.federated.kmeans_stats`` and
``ownership`` (numpy only) can be imported without torch, as a Flower node answering a k-means or ownership sum does.
"""

import importlib

_NAMES = {"FedAvgConfig": "fedavg", "RoundRecord": "fedavg", "StateVector": "fedavg", "TrainResult": "fedavg",
          "client_seed": "fedavg", "train_federated": "fedavg", "SGDConfig": "local", "evaluate": "local",
          "EvalMetrics": "local", "eval_metrics": "local", "train_local": "local", "train_distilled": "local"}

__all__ = list(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
