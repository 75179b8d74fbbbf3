"""Privacy-overhead benchmark: what each secure-aggregation protocol costs, side by side with plaintext.

- ``workloads``: the vectors summed (FedAvg of the reference CNN, 10^6 values, k-means statistics, gamma).
- ``grid``: protocol x workload x clients x dropout cells, medians over rounds, errors vs the exact sum.
- ``output``: text table, results.csv / results.json, PNG plots.
- ``anchor``: our masking against Flower's own SecAgg+ in the same run.
- ``end_to_end``: a whole federated active-learning experiment per protocol.
- ``run``: presets and the driver behind ``secure-fal bench``. Results and how to reproduce: docs/benchmarks.md.
- ``flower_secaggplus``: Flower's own SecAgg+ workflow (ServerApp / ClientApp) timed on our workload (the anchor).
- ``deployment``: one secure round in Flower's deployment engine per protocol (``python -m secure_fal.bench.deployment``).
- ``samplers``: every sampler timed on a synthetic pool (``python -m secure_fal.bench.samplers``).
"""

from .grid import Cell, ProtocolSpec, exact_fixed_point_sum, grid_cells, run_cell, run_grid, sum_errors
from .run import PRESETS, BenchSettings, run_bench
from .workloads import Workload, quick_workloads, standard_workloads

__all__ = ["Cell", "ProtocolSpec", "exact_fixed_point_sum", "grid_cells", "run_cell", "run_grid", "sum_errors",
           "PRESETS", "BenchSettings", "run_bench", "Workload", "quick_workloads", "standard_workloads"]
