"""Active-mode masking over Flower's envelope, without a Flower runtime (protocols/flower.md §Active mode): the
roster travels in the protocol options of the run, each node pins its digest and signs with its own key from its
node config; per-round and session mode give the exact sum; a node refuses another roster, a missing key, and an
honest-but-curious opening when it requires the active mode."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import RecordDict  # noqa: E402

from secure_fal.flower.carrier.envelope import client_step  # noqa: E402
from secure_fal.flower.carrier.server_round import ServerRound  # noqa: E402
from secure_fal.flower.carrier.session_keys import ServerSetup, client_setup_step  # noqa: E402
from secure_fal.flower.secure_sum.client_app import synthetic_inputs  # noqa: E402
from secure_fal.flower.secure_sum.synthetic import synthetic_input  # noqa: E402
from secure_fal.secagg import MessageError, make_protocol, secure_sum  # noqa: E402
from secure_fal.secagg.encoding import FixedPoint  # noqa: E402
from secure_fal.secagg.identity import Identity, Roster  # noqa: E402
from secure_fal.secagg.machine import RoundSpec  # noqa: E402
from secure_fal.secagg.node import NodePolicy  # noqa: E402

SEED, LENGTH, BOUND, SESSION = 5, 30, 1.0, 0xF10E
CLIENTS = (0, 1, 2, 3, 4)
IDENTITIES = {c: Identity() for c in CLIENTS}
ROSTER = Roster.of(IDENTITIES)


def policy(cid, **changes):
    """Node ``cid``'s policy: the roster's digest pinned and its own signing key (node config)."""
    return NodePolicy(**{"protocols": frozenset({"masking"}), "active": True, "roster_sha256": ROSTER.digest(),
                         "signing_key": IDENTITIES[cid].to_bytes(), **changes})


def drive(state, handler, silent=frozenset()):
    exchanges = 0
    while batches := state.next_batches():
        state.take_answers({cid: handler(content, cid) for cid, content in batches.items() if cid not in silent})
        exchanges += 1
    return exchanges


def expected(round_id, contributors):
    xs = {c: synthetic_input(SEED, c, round_id, LENGTH, BOUND) for c in contributors}
    return secure_sum("plaintext", xs, bound=BOUND).total


@pytest.mark.parametrize("rounds_per_setup", [None, 2])
def test_active_rounds_over_records_give_the_exact_sum(rounds_per_setup):
    options = {"active": True, "roster": ROSTER.to_dict(), "threshold": 4}
    if rounds_per_setup:
        options["rounds_per_setup"] = rounds_per_setup
    states = {c: RecordDict() for c in CLIENTS}
    protocol = make_protocol("masking", **options)
    if rounds_per_setup:
        setup = ServerSetup("masking", options, SESSION, CLIENTS)
        drive(setup, lambda content, cid: client_setup_step(content, states[cid], cid, policy(cid)))
        protocol = setup.outcome(0.0).protocol
    for round_id in (1, 2):
        spec = RoundSpec(SESSION, round_id, CLIENTS, LENGTH, FixedPoint(BOUND, 24, len(CLIENTS)))
        server = ServerRound(protocol, options, spec, {"seed": SEED})
        count = drive(server, lambda content, cid: client_step(content, states[cid], cid, synthetic_inputs,
                                                               policy(cid)))
        assert count == (3 if rounds_per_setup else 5)   # one exchange more than honest-but-curious mode
        got = server.outcome(0.0)
        assert got.contributors == CLIENTS and np.array_equal(got.total, expected(round_id, CLIENTS))


@pytest.mark.parametrize("options, changes, field", [
    ({"active": True, "roster": Roster.of({c: Identity() for c in CLIENTS}).to_dict()}, {}, "roster"),  # not pinned
    ({"active": True, "roster": ROSTER.to_dict()}, {"signing_key": b""}, "roster"),                   # no key
    ({"active": True, "roster": ROSTER.to_dict()}, {"signing_key": Identity().to_bytes()}, "roster"),  # not its key
    ({}, {}, "active"),                                                 # honest-but-curious where active is required
])
def test_a_node_refuses_an_active_opening_it_cannot_trust(options, changes, field):
    spec = RoundSpec(SESSION, 1, CLIENTS, LENGTH, FixedPoint(BOUND, 24, len(CLIENTS)))
    batch = ServerRound(make_protocol("masking", **options), options, spec, {"seed": SEED}).next_batches()[2]
    state = RecordDict()
    with pytest.raises(MessageError) as err:
        client_step(batch, state, 2, synthetic_inputs, policy(2, **changes))
    assert (err.value.client, err.value.round_id, err.value.field) == (2, 1, field)
    assert not state.config_records


def test_roster_and_identity_round_trip_and_survive_pickle():
    import pickle

    again = Roster.from_dict(ROSTER.to_dict())
    assert again.digest() == ROSTER.digest() and again.clients == CLIENTS
    ident = pickle.loads(pickle.dumps(IDENTITIES[1]))
    sig = ident.sign(b"statement")
    assert pickle.loads(pickle.dumps(ROSTER)).valid(1, b"statement", sig)
    assert not ROSTER.valid(2, b"statement", sig) and not ROSTER.valid(1, b"other", sig)
    with pytest.raises(MessageError, match="not in the session's roster") as err:
        ROSTER.verify(9, b"statement", sig, round_id=3, field="keys")
    assert (err.value.client, err.value.round_id, err.value.field) == (9, 3, "keys")
