"""secure_fal: federated active learning where every cross-client statistic is aggregated securely."""

__version__ = "0.1.0"
