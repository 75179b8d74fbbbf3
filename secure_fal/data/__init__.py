"""Datasets (in-memory tensors) and the client partitions of the reference settings."""

from .datasets import (LOADERS, Dataset, DatasetNotFoundError, default_data_root, load_dataset, make_dataset,
                       read_idx)
from .splits import (balanced_allocation, dirichlet_balanced_split, dirichlet_split, homogeneous_split, kmeans_split,
                     long_tail_counts, long_tail_indices, shot_noise)

__all__ = [
    "Dataset", "DatasetNotFoundError", "LOADERS", "default_data_root", "load_dataset", "make_dataset", "read_idx",
    "homogeneous_split", "dirichlet_split", "dirichlet_balanced_split", "balanced_allocation", "long_tail_counts",
    "long_tail_indices", "kmeans_split", "shot_noise",
]
