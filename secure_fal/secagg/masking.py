"""Pairwise-masking secure aggregation with dropout recovery: SecAgg (Bonawitz et al. 2017) and its
sparse-graph variant SecAgg+ (Bell et al. 2020), as sans-I/O machines. Spec: protocols/masking.md.

Client u sends y_u = x_u + PRG(b_u) + sum_{v in N(u), v > u} PRG(s_uv) - sum_{v in N(u), v < u} PRG(s_uv)
(mod 2^k), where b_u is a fresh random seed and s_uv a seed agreed with neighbour v, having first
Shamir-shared b_u and its key-agreement secret s_sk_u among its neighbours. Pairwise masks cancel in the
sum; the server removes self-masks of the clients whose input arrived, and the pairwise masks of clients
that dropped after sharing, from shares that the surviving clients reveal. Phases and sets:

    advertise     clients send public keys                    -> U1 (advertised)
    share         clients send sealed shares                  -> U2 (shared)      U2 within U1
    masked_input  clients send y_u                            -> U3 (contributors) U3 within U2
    unmask        clients send shares of b (U3) / s_sk (U2-U3) -> U4 (answered)    U4 within U3

The result is the exact fixed-point sum over U3, bit for bit what the plaintext protocol returns for
the same inputs and surviving set.
"""

from __future__ import annotations

import numpy as np

from .api import SecureSumProtocol
from .machine import ClientMachine, RoundSpec, ServerMachine
from .masking_client import MaskingClient
from .masking_graph import NeighbourSetting, Neighbourhoods, ThresholdSetting, check_settings, neighbourhoods
from .masking_messages import Advertise, MaskedInput, Shares, Unmask
from .masking_server import MaskingServer

__all__ = ["MaskingProtocol", "MaskingServer", "MaskingClient"]


class MaskingProtocol(SecureSumProtocol):
    """Pairwise masking with Shamir-shared dropout recovery (SecAgg / SecAgg+).

    Args:
        threshold: shares t needed to recover a client's secret. None (default): floor(2m/3) + 1 with
            m = neighbours + 1; an int: t itself; a float f in (1/2, 1]: ceil(f * m). Must satisfy
            m/2 < t <= m for every round (checked per round: InputError field 'threshold').
        neighbours: None (default): complete graph (SecAgg); an int k: SecAgg+ graph with k neighbours
            (rounded up to even, capped at n - 1); "log": k = 2 * ceil(log2 n).

    Up to m - t clients of a neighbourhood may drop out; fewer than t colluding parties (the server
    included) learn nothing beyond the sum. See protocols/masking.md.
    """

    NAME = "masking"
    CLIENT_PHASES = ("advertise", "share", "masked_input", "unmask")
    PHASE_OF_KIND = {Advertise.KIND: "advertise", Shares.KIND: "share", MaskedInput.KIND: "masked_input",
                     Unmask.KIND: "unmask"}

    def __init__(self, threshold: ThresholdSetting = None, neighbours: NeighbourSetting = None) -> None:
        check_settings(neighbours, threshold)
        self.threshold = threshold
        self.neighbours = neighbours

    def graph(self, spec: RoundSpec) -> Neighbourhoods:
        """The neighbour graph and threshold of a round (the same for every party)."""
        return neighbourhoods(spec, self.neighbours, self.threshold)

    def server(self, spec: RoundSpec) -> ServerMachine:
        return MaskingServer(spec, self.graph(spec))

    def client(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> ClientMachine:
        return MaskingClient(cid, spec, vector, self.graph(spec))
