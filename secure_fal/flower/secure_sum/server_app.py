"""The Flower ServerApp: a session of secure sums, the server machine of each round running here.

Run config (``flwr run APP_DIR CONNECTION --run-config "protocol='masking' rounds=2 ..."``; defaults in
``SessionSettings``): protocol, options (JSON object of protocol options), rounds, length, bound,
frac-bits, seed, timeout, min-nodes, wait-nodes, result-file. The session id and round ids are those of
``Aggregator(protocol, clients, frac_bits=..., seed=seed)``, and the clients' synthetic inputs depend on
(seed, client id, round) only, so an in-process run with the same seed and the same dropouts gives the
same result bit for bit (plaintext, masking; CKKS too wherever its error bound guarantees exactness).
For CKKS the session starts with the in-band key distribution (``session_keys.run_setup``) among the
discovered clients; its rounds include only the key holders.

With ``privacy`` (a JSON object of ``DPSettings`` fields) every sum is a noised release, declared as a
'fedavg-update' clipped to ``clip_norm`` (it stands in for a model update), as ``Aggregator(..., seed=seed,
privacy=PrivacySession(DPSettings(max_contributors=<discovered clients>, **privacy)))`` makes it: the server
charges it (``privacy.release.open_release``) before the round opens, the opening carries the release's public
parameters, each node clips and adds its noise share, and the server decodes the sum; with a ``noise_seed`` the
noised sums equal the in-process ones bit for bit. The record then holds ``privacy_ledger`` and ``privacy``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from ...secagg.api import make_protocol
from ...secagg.encoding import FixedPoint
from ...secagg.errors import DropoutError, SecAggError
from ...secagg.machine import RoundSpec
from ...secagg.privacy import DPSettings, PrivacySession, Statistic
from ...secagg.privacy.ledger import sum_entry
from ...secagg.privacy.release import open_release
from ...secagg.privacy.session import SERVER, dp_label
from ..carrier.envelope import DP_KEY
from ..carrier.exchange import Patience, discover_clients, run_round
from ..carrier.run_config import settings_kwargs, to_run_config, write_json
from ..carrier.server_round import FlowerRound
from ..carrier.session_keys import SetupOutcome, run_setup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionSettings:
    """Parameters of one session (one ``flwr run``).

    Attributes:
        protocol: 'masking' (default), 'plaintext' or 'ckks'.
        options: protocol constructor options, e.g. {"neighbours": 4, "threshold": 3} (masking) or
            {"dealer": 2, "params": {"poly_modulus_degree": 8192}} (ckks).
        rounds: secure sums to run (default 1).
        length: values per input vector L (default 1000).
        bound: public bound on |value| (default 1.0).
        frac_bits: fixed-point fractional bits (default 24).
        seed: session seed: session id, and the clients' synthetic inputs (default 0).
        timeout: floor (s) of the wait for the answers of each exchange (default 30; ``carrier.exchange.Patience``).
        min_nodes: nodes that must have answered the hello before the first round (default 2).
        wait_nodes: seconds to wait for ``min_nodes`` nodes to connect (default 60).
        result_file: where to write the session's results as JSON ('' = nowhere).
        privacy: ``DPSettings`` fields (max_contributors: default the number of discovered clients); empty: exact
            sums.
    """

    protocol: str = "masking"
    options: Mapping[str, object] = field(default_factory=dict)
    rounds: int = 1
    length: int = 1000
    bound: float = 1.0
    frac_bits: int = 24
    seed: int = 0
    timeout: float = 30.0
    min_nodes: int = 2
    wait_nodes: float = 60.0
    result_file: str = ""
    privacy: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> SessionSettings:
        """Read Flower run config keys (dashes for underscores, ``options`` and ``privacy`` as JSON strings)."""
        kwargs = settings_kwargs(cls, config)
        for key in ("options", "privacy"):
            if key in kwargs:
                kwargs[key] = json.loads(str(kwargs[key]))
                if not isinstance(kwargs[key], dict):
                    raise ValueError(f"run config {key!r} must be a JSON object, got {config[key]!r}")
        return cls(**kwargs)

    def to_run_config(self) -> dict[str, bool | int | float | str]:
        """Inverse of ``from_run_config``: the Flower run config (and the App's declared defaults)."""
        out = to_run_config(self)
        for key in ("options", "privacy"):
            out[key] = json.dumps(dict(getattr(self, key)), sort_keys=True)
        return out


def run_session(grid: Grid, settings: SessionSettings, on_round: Callable[[FlowerRound], None] | None = None,
                on_setup: Callable[[SetupOutcome], None] | None = None,
                privacy: Callable[[int], PrivacySession] | None = None,
                ledger: list[dict] | None = None) -> list[FlowerRound]:
    """Discover the clients, then run ``settings.rounds`` secure sums among the connected ones; before a round
    that the protocol's keys do not cover (``setup_due``: CKKS before the first round, session-mode masking every
    R rounds) the keys are set up in band among the connected clients (``run_setup``, then ``on_setup``).

    Each round's clients are the discovered clients whose node the SuperLink still lists (and that hold the
    session's keys: ``protocol.round_clients``); round r has round id r and the session id is fresh randomness.
    ``privacy``: number of discovered clients -> the session's PrivacySession (module docstring; None: exact sums);
    every sum's ledger entry (``privacy.ledger.sum_entry``) is appended to ``ledger`` when given.
    """
    protocol = make_protocol(settings.protocol, **settings.options)
    patience = Patience(settings.timeout)
    nodes = discover_clients(grid, min_nodes=settings.min_nodes, wait_nodes=settings.wait_nodes, timeout=patience)
    log.info("clients %s on nodes %s", sorted(nodes), [nodes[c] for c in sorted(nodes)])
    session = secrets.randbits(64)  # always fresh (protocols/masking.md §Round registry), as Aggregator's
    dp = privacy(len(nodes)) if privacy is not None else None
    label = dp_label(settings.seed)
    rounds = []
    for round_id in range(1, settings.rounds + 1):
        online = set(grid.get_node_ids())
        up = tuple(sorted(c for c, node in nodes.items() if node in online))
        if protocol.setup_due(round_id):
            setup = run_setup(grid, settings.protocol, settings.options, session, nodes, timeout=patience,
                              members=up, first_round=round_id)
            log.info("session keys for rounds from %d: holders %s, %.2f s", round_id, list(setup.key_holders),
                     setup.seconds)
            protocol = setup.protocol
            if on_setup is not None:
                on_setup(setup)
        members = protocol.round_clients(up)
        if not members:
            raise DropoutError("no client is connected", round_id=round_id)
        workload: dict[str, object] = {"seed": settings.seed}
        length, bound, frac_bits = settings.length, settings.bound, settings.frac_bits
        release = None
        if dp is not None:
            release = open_release(dp, Statistic("fedavg-update"), settings.length, protocol.NAME, label, round_id,
                                   settings.bound)
            workload[DP_KEY] = release.to_json()
            length, bound, frac_bits = release.round_shape(settings.frac_bits)
        spec = RoundSpec(session, round_id, members, length,
                         FixedPoint(bound, frac_bits, len(members), release and release.sum_bound))
        result = run_round(grid, protocol, settings.options, spec, nodes, timeout=patience, workload=workload)
        if release is not None:
            result = dataclasses.replace(result, total=release.server_total(
                result.total, result.contributors, dp.noise_source(label, round_id, SERVER)))
        if ledger is not None:
            ledger.append(sum_entry(round_id=round_id, kind=release and release.kind, length=settings.length,
                                    protocol=protocol.NAME, contributors=result.contributors,
                                    cal=release and release.calibration))
        log.info("round %d: %d contributors, %.2f s", round_id, len(result.contributors), result.seconds)
        rounds.append(result)
        if on_round is not None:
            on_round(result)
    return rounds


def round_to_dict(result: FlowerRound) -> dict:
    """JSON-ready record of one round (floats written with repr precision, so they read back exactly)."""
    return {"round_id": result.report.round_id, "contributors": list(result.contributors),
            "total": [float(x) for x in result.total], "seconds": result.seconds,
            "report": result.report.to_dict(), "wire": result.wire.to_dict()}


def make_server_app(settings: SessionSettings | None = None, record: dict | None = None) -> ServerApp:
    """A ServerApp running ``run_session``; settings from the run config unless given here.

    The session's record {"settings", "setup" (protocols with session keys: the first ``SetupOutcome.to_dict``;
    "setups": all of them), "rounds": [round_to_dict, ...], "privacy_ledger" (one entry per sum), "privacy" (with
    ``settings.privacy``: the DPSettings and the epsilon spent)}, plus "error" if the session fails (the error is then re-raised), is kept in ``record`` (when given:
    filled in place, for callers in the same process, e.g. the simulation engine) and written to
    ``result_file`` (when set) after the key distribution and after every round.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = settings or SessionSettings.from_run_config(context.run_config)
        out = record if record is not None else {}
        out.update(settings=asdict(s), rounds=[], privacy_ledger=[])
        sessions: list[PrivacySession] = []

        def privacy(clients: int) -> PrivacySession:
            sessions.append(PrivacySession(DPSettings(**{"max_contributors": clients, **s.privacy})))
            return sessions[-1]

        def on_round(result: FlowerRound) -> None:
            out["rounds"].append(round_to_dict(result))
            if sessions:
                out["privacy"] = {"enabled": True, **dataclasses.asdict(sessions[0].settings),
                                  "epsilon_spent": sessions[0].spent()}
            if s.result_file:
                write_json(s.result_file, out)

        def on_setup(setup: SetupOutcome) -> None:
            out.setdefault("setup", setup.to_dict())
            out.setdefault("setups", []).append(setup.to_dict())
            if s.result_file:
                write_json(s.result_file, out)

        try:
            run_session(grid, s, on_round, on_setup, privacy if s.privacy else None, out["privacy_ledger"])
        except (SecAggError, ValueError) as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            if s.result_file:
                write_json(s.result_file, out)
            raise

    return app


app = make_server_app()
