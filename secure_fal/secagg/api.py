"""The one aggregation interface: every cross-client statistic goes through ``Aggregator.sum``.

Strategies, FedAvg and federated k-means only ever see this module. Which protocol runs underneath
(plaintext, CKKS, masking) is a constructor argument; all of them compute the same quantity,

    sum_k round(x_k * 2^frac_bits) * 2^-frac_bits    over the clients k whose input survives,

exactly (plaintext, masking) or within the protocol's stated error (CKKS).
"""

from __future__ import annotations

import importlib
import random
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .encoding import FixedPoint
from .errors import DropoutError, InputError
from .machine import ClientMachine, RoundSpec, ServerMachine
from .node import NodePolicy, RoundRegistry
from .privacy.ledger import sum_entry
from .privacy.release import noised_mean, open_release
from .privacy.session import SERVER, PrivacySession, Statistic, dp_label
from .report import CostTotals, Report
from .transport import Faults, run_round
from .weighted import power_of_two_above, weighted_bounds, weighted_input


class SecureSumProtocol(ABC):
    """A protocol: makes the server and client machines of each round.

    Subclasses set NAME, CLIENT_PHASES (ordered client phases, used for dropout plans) and
    PHASE_OF_KIND (message kind -> client phase in which clients send it). ``setup`` runs once per
    session before the first round (e.g. CKKS key generation); keys and other long-lived state live on
    the protocol object, one per session.

    Protocols whose clients need keys from an in-band setup (``has_session_keys``: CKKS, session-mode
    masking) also offer, all with the same meaning: ``SETUP_PHASES`` / ``SETUP_PHASE_OF_KIND`` (as
    CLIENT_PHASES / PHASE_OF_KIND, for the setup), ``setup_server(session, members, first_round)`` and
    ``setup_client(cid, session, members, first_round)`` (the setup's machines, driven like a round's:
    ``start/receive/on_timeout``, ``phase``, ``done``; the server's ``contributors`` = the key holders; a
    client's ``keys()`` = its keys as bytes once done), ``install_setup(server_machine)`` on the server's
    object and ``load_client_keys(cid, keys)`` on a client's. ``setup_due(round_id)`` says when a setup must
    run before a round (the in-process ``Aggregator`` then runs one among all the session's clients).
    """

    NAME: ClassVar[str]
    CLIENT_PHASES: ClassVar[tuple[str, ...]]
    PHASE_OF_KIND: ClassVar[dict[int, str]]
    SETUP_PHASES: ClassVar[tuple[str, ...]] = ()
    SETUP_PHASE_OF_KIND: ClassVar[dict[int, str]] = {}

    def setup(self, clients: Sequence[int], rng: random.Random) -> None:
        """Once per session, before any round. Default: nothing to set up."""

    @property
    def has_session_keys(self) -> bool:
        """True when clients need keys from an in-band setup before taking part in rounds."""
        return False

    def setup_due(self, round_id: int) -> bool:
        """True when an in-band setup must run before round ``round_id`` on this (server's) object."""
        return False

    def spent_keys(self, cid: int) -> bytes | None:
        """Client ``cid``'s keys as bytes once building its round machine changed them (session-mode masking
        deletes the round's secrets), for a node to store back; None when nothing changed. Default: None."""
        return None

    def round_clients(self, members: tuple[int, ...]) -> tuple[int, ...]:
        """Which of ``members`` (sorted ids with inputs) can take part in a round now. Default: all."""
        return members

    def pin(self, policy: NodePolicy, cid: int, round_id: int) -> None:
        """Client side, before building a machine from options a server sent: apply the parts of a node's
        ``policy`` that concern this protocol's parameters; InputError naming ``cid``, ``round_id`` and the field
        when the options are weaker. Default: nothing to pin."""

    @property
    def registries(self) -> dict[int, RoundRegistry]:
        """Client id -> the (session, round) pairs it answered through this object; a protocol whose clients hold
        secrets claims each round there when it builds a client machine (a node installs its persisted registry
        first: ``secure_fal.flower.carrier.envelope.client_step``)."""
        if "_registries" not in self.__dict__:
            self._registries: dict[int, RoundRegistry] = {}
        return self._registries

    def claim_round(self, cid: int, spec: RoundSpec) -> None:
        """Record that client ``cid`` answers round ``spec``; ReplayError (field 'round') if it already did."""
        self.registries.setdefault(cid, RoundRegistry()).claim(spec.session, spec.round_id, cid)

    @abstractmethod
    def server(self, spec: RoundSpec) -> ServerMachine: ...

    @abstractmethod
    def client(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> ClientMachine: ...

    def error_bound(self, spec: RoundSpec, n_inputs: int) -> float:
        """Largest |result - exact sum of the inputs| per coordinate this protocol guarantees."""
        return n_inputs * 2.0 ** -(spec.encoding.frac_bits + 1)


@dataclass
class SumResult:
    """Outcome of one secure sum.

    Attributes:
        total: float64 array (L,), the sum over ``contributors``.
        contributors: ids of the clients whose inputs are in ``total`` (sorted).
        report: bytes and seconds of the round.
    """

    total: np.ndarray
    contributors: tuple[int, ...]
    report: Report


_PROTOCOL_CLASSES = {"plaintext": "PlaintextProtocol", "ckks": "CKKSProtocol", "masking": "MaskingProtocol"}


def make_protocol(name: str, **kwargs) -> SecureSumProtocol:
    """Protocol by name: 'plaintext', 'ckks' or 'masking'; kwargs go to its constructor.

    Only the chosen protocol's module is imported (CKKS pulls in TenSEAL).
    """
    if name not in _PROTOCOL_CLASSES:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(_PROTOCOL_CLASSES)}")
    module = importlib.import_module(f"{__package__}.{name}")
    return getattr(module, _PROTOCOL_CLASSES[name])(**kwargs)


class Aggregator:
    """A secure-aggregation session among a fixed population of clients.

    Args:
        protocol: a protocol object, or its name (then ``protocol_kwargs`` configure it).
        clients: every client id that may ever contribute in this session.
        frac_bits: fixed-point precision: inputs are rounded to multiples of 2^-frac_bits.
        seed: makes the protocol randomness that is not secret reproducible. The session id is always fresh
            randomness (``secrets``), never derived from ``seed``: two sessions with the same seed must not accept
            each other's messages (protocols/masking.md §Round registry). Secrets always come from the OS's
            cryptographic RNG.
        fault_plan: round id (1-based) -> the fault plan of that round, for sums called without ``faults``
            (tests and benchmarks inject dropouts into code that does not pass ``faults`` itself).
        setup_fault_plan: first round id of an in-band setup -> the fault plan of that setup (phases of
            ``protocol.SETUP_PHASES``).
        privacy: the run's differential-privacy session (``privacy.PrivacySession``), shared by every cycle's
            Aggregator; None: exact sums.

    ``ledger`` lists what the server learned from each released sum (``privacy.ledger.sum_entry``), DP or not.

    Each ``sum`` call is one round with a fresh round id; ``totals`` accumulates costs over rounds. When the
    protocol says a setup is due before a round (session-mode masking: before the first round and whenever
    the rounds of the last setup ran out), ``sum`` first runs it in process among all ``clients``; its costs
    go to ``setup_reports`` (one Report per setup, round id = its first round, length 0), not to ``totals``.
    """

    def __init__(self, protocol: SecureSumProtocol | str, clients: Sequence[int], *, frac_bits: int = 24,
                 seed: int | None = None, fault_plan: Callable[[int], Faults | None] | None = None,
                 setup_fault_plan: Callable[[int], Faults | None] | None = None,
                 privacy: PrivacySession | None = None, **protocol_kwargs) -> None:
        self.fault_plan = fault_plan
        self.privacy = privacy
        self.ledger: list[dict] = []
        self.setup_fault_plan = setup_fault_plan
        self.setup_reports: list[Report] = []
        self.protocol = make_protocol(protocol, **protocol_kwargs) if isinstance(protocol, str) else protocol
        self.clients = tuple(sorted(set(clients)))
        self.frac_bits = frac_bits
        self._rng = random.Random(seed)
        self.session = secrets.randbits(64)
        # public name of this session in the DP rotation and in noise keys derived from a noise_seed: reproducible
        # from ``seed`` (so runs under different protocols noise alike), else the fresh session id
        self.dp_label = self.session if seed is None else dp_label(seed)
        self.round_id = 0
        self.totals = CostTotals()
        self.reports: list[Report] = []
        self.protocol.setup(self.clients, self._rng)

    @property
    def name(self) -> str:
        return self.protocol.NAME

    def sum(self, inputs: Mapping[int, np.ndarray], *, bound: float, clip: bool = False,
            faults: Faults | None = None, statistic: Statistic | None = None,
            sum_bound: float | None = None) -> SumResult:
        """Securely sum one vector per client.

        Args:
            inputs: client id -> 1-D array of length L (the same L for all). Clients absent here do not
                take part in this round, nor do those the protocol leaves out (``round_clients``: in
                session-mode masking, the clients that hold no keys of the current setup).
            bound: public bound on every |coordinate|; inputs beyond it raise InputError, or are clipped
                when ``clip`` is True (under DP the statistic's L2 clip replaces both).
            faults: optional dropout / message-fault plan (tests and benchmarks); default: the session's
                ``fault_plan`` for this round, if any.
            statistic: what is summed (kind, L2 bound; ``privacy.Statistic``): recorded in ``ledger``, and required
                when the session has a ``privacy`` session, whose mechanism then clips, noises and encodes each input
                (``privacy.mechanisms``) and charges the release to the run's budget first.
            sum_bound: public bound on |sum of the inputs| per coordinate, when tighter than (number of inputs) x
                bound: sizes the ring (``FixedPoint.sum_bound``); the caller vouches for it (a sum beyond it wraps).

        Returns:
            SumResult with the float64 sum over the clients that finished the protocol (under DP: the noised sum).
        """
        unknown = sorted(set(inputs) - set(self.clients))
        if unknown:
            raise InputError(f"not a client of this session (clients: {list(self.clients)})", client=unknown[0],
                             round_id=self.round_id + 1, field="inputs")
        if not inputs:
            raise InputError("no inputs", round_id=self.round_id + 1, field="inputs")
        lengths = {cid: np.shape(v) for cid, v in inputs.items()}
        first = next(iter(inputs))
        length = int(np.shape(inputs[first])[0]) if np.ndim(inputs[first]) == 1 else 0
        for cid, shape in lengths.items():
            if shape != (length,) or length == 0:
                raise InputError(f"vector has shape {shape}, expected a 1-D vector of the common length"
                                 f" {length} (client {first})", client=cid, round_id=self.round_id + 1,
                                 field="vector")
        if self.privacy is not None:
            return self._private_sum(inputs, length, bound, faults, statistic)
        result = self._round(inputs, length, bound, self.frac_bits, clip, faults, sum_bound)
        self.ledger.append(sum_entry(round_id=self.round_id, kind=statistic and statistic.kind, length=length,
                                     protocol=self.name, contributors=result.contributors, cal=None))
        return result

    def _round(self, inputs: Mapping[int, np.ndarray], length: int, bound: float, frac_bits: int, clip: bool,
               faults: Faults | None, sum_bound: float | None = None) -> SumResult:
        """One protocol round over vectors of ``length`` values (setup first when due)."""
        self.round_id += 1
        if faults is None and self.fault_plan is not None:
            faults = self.fault_plan(self.round_id)
        if self.protocol.setup_due(self.round_id):
            self._run_setup()
        members = self.protocol.round_clients(tuple(sorted(inputs)))
        if not members:
            raise DropoutError("no client with an input can take part (none holds keys of the session's setup)",
                               round_id=self.round_id)
        try:
            encoding = FixedPoint(bound, frac_bits, len(members), sum_bound)
        except InputError as exc:
            raise InputError(exc.what, round_id=self.round_id, field=exc.field) from None
        spec = RoundSpec(self.session, self.round_id, members, length, encoding, clip)
        server = self.protocol.server(spec)
        machines = {cid: self.protocol.client(cid, spec, np.asarray(inputs[cid])) for cid in members}
        report = Report(self.protocol.NAME, self.round_id, length, members)
        run_round(server, machines, report, self.protocol.PHASE_OF_KIND, self.protocol.CLIENT_PHASES, faults)
        self.totals.add(report)
        self.reports.append(report)
        return SumResult(server.result, server.contributors, report)

    def _private_sum(self, inputs: Mapping[int, np.ndarray], length: int, bound: float, faults: Faults | None,
                     statistic: Statistic | None) -> SumResult:
        """``sum`` under the session's privacy mechanism (protocols/dp.md)."""
        round_id = self.round_id + 1
        release = open_release(self.privacy, statistic, length, self.name, self.dp_label, round_id, bound)
        fed = {cid: release.client_input(x, self.privacy.noise_source(self.dp_label, round_id, cid), cid)
               for cid, x in inputs.items()}
        res = self._round(fed, *release.round_shape(self.frac_bits), False, faults, release.sum_bound)
        total = release.server_total(res.total, res.contributors,
                                     self.privacy.noise_source(self.dp_label, round_id, SERVER))
        self.ledger.append(sum_entry(round_id=round_id, kind=statistic.kind, length=length, protocol=self.name,
                                     contributors=res.contributors, cal=release.calibration))
        return SumResult(total, res.contributors, res.report)

    def _run_setup(self) -> None:
        """The protocol's in-band setup among all clients, for the rounds from ``round_id`` on."""
        faults = self.setup_fault_plan(self.round_id) if self.setup_fault_plan is not None else None
        self.setup_reports.append(run_setup(self.protocol, self.session, self.clients, self.round_id, faults))

    def weighted_mean(self, vectors: Mapping[int, np.ndarray], weights: Mapping[int, float], *, bound: float,
                      weight_bound: float, weight_total: float | None = None, faults: Faults | None = None,
                      statistic: Statistic | None = None) -> tuple[np.ndarray, float, SumResult]:
        """Weighted mean sum_k w_k x_k / sum_k w_k in ONE secure sum of the vectors [w_k x_k / T, w_k / T].

        One round keeps numerator and denominator over the same surviving clients. The weights are normalised by
        the public weight total T, so the ring holds max(bound, 1) per coordinate whatever the number of clients
        (``weighted``: sizing rule, error bound n * 2^-(frac_bits+1) * T / sum_k w_k, what the server learns).

        Args:
            vectors: client id -> 1-D array (L,) with |x| <= bound.
            weights: client id -> weight w_k with 0 <= w_k <= weight_bound (e.g. labeled-sample counts).
            weight_total: T, a public power of two >= the sum of the weights (default: the smallest one above the
                sum of ``weights`` over ``vectors``).
            statistic: what the vectors are (``sum``); under DP the mean is unweighted (each contributor counts 1,
                so no weight is released), projected onto the L2 ball of the statistic's clip norm (where the exact
                mean of clipped inputs lies), and the total weight returned is the number of contributors.
        Returns:
            (mean (L,) float64, total weight of the contributors, the SumResult).
        """
        if self.privacy is not None:
            res = self.sum({cid: np.asarray(x, dtype=np.float64) for cid, x in vectors.items()}, bound=bound,
                           faults=faults, statistic=statistic)
            return (noised_mean(res.total, len(res.contributors), self.privacy.clip_for(statistic)),
                    float(len(res.contributors)), res)
        for cid in vectors:
            w = float(weights[cid])
            if not 0 <= w <= weight_bound:
                raise InputError(f"weight {w} outside [0, {weight_bound}]", client=cid,
                                 round_id=self.round_id + 1, field="weight")
        total = sum(float(weights[cid]) for cid in vectors)
        if weight_total is None:
            weight_total = power_of_two_above(total)
        elif total > weight_total:
            raise InputError("the weights sum to more than weight_total", round_id=self.round_id + 1,
                             field="weight_total")
        per_input, sum_bound = weighted_bounds(bound, weight_bound, weight_total, len(vectors), self.frac_bits)
        stacked = {cid: weighted_input(x, float(weights[cid]), weight_total) for cid, x in vectors.items()}
        res = self.sum(stacked, bound=per_input, faults=faults, statistic=statistic, sum_bound=sum_bound)
        if not res.total[-1] > 0:
            raise InputError("total weight of the contributing clients is 0", round_id=self.round_id,
                             field="weight")
        return res.total[:-1] / res.total[-1], float(res.total[-1]) * weight_total, res


def run_setup(protocol: SecureSumProtocol, session: int, members: Sequence[int], first_round: int,
              faults: Faults | None = None) -> Report:
    """Run ``protocol``'s in-band setup in process (``run_round``) and install its outcome on ``protocol``, for
    the server and for every key holder: ``install_setup`` and ``load_client_keys`` (from each holder's
    ``keys()`` bytes). ``faults`` drops members at a phase of ``protocol.SETUP_PHASES``.

    Returns:
        the setup's Report (round id ``first_round``, length 0; ``dropped``: the members that hold no keys).
    """
    members = tuple(sorted(set(members)))
    server = protocol.setup_server(session, members, first_round)
    machines = {cid: protocol.setup_client(cid, session, members, first_round) for cid in members}
    report = Report(f"{protocol.NAME}-setup", first_round, 0, members)
    run_round(server, machines, report, protocol.SETUP_PHASE_OF_KIND, protocol.SETUP_PHASES, faults)
    protocol.install_setup(server)
    for cid in server.contributors:
        protocol.load_client_keys(cid, machines[cid].keys())
    return report


def secure_sum(protocol: SecureSumProtocol | str, contributions: Mapping[int, np.ndarray], *, bound: float,
               frac_bits: int = 24, clip: bool = False, faults: Faults | None = None, seed: int | None = None,
               **protocol_kwargs) -> SumResult:
    """One-shot secure sum over the given clients (a session of one round)."""
    agg = Aggregator(protocol, list(contributions), frac_bits=frac_bits, seed=seed, **protocol_kwargs)
    return agg.sum(contributions, bound=bound, clip=clip, faults=faults)
