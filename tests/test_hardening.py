"""The smaller hardening items of issue 12 (point 7): exact decoding or a refused configuration, exact integer
inputs, errors that name client / round / field and carry no secret or private value, fresh session ids, SEAL
key material never in a named file, duplicated dict keys refused."""

import os
import re
import struct

import numpy as np
import pytest

from secure_fal.secagg import Aggregator, InputError, MessageError, ReplayError, secure_sum
from secure_fal.secagg.ckks import context as ckks_context
from secure_fal.secagg.encoding import MAX_EXACT, FixedPoint
from secure_fal.secagg.masking import prg
from secure_fal.secagg.masking.messages import KINDS, PROTOCOL_ID, PeerKeys
from secure_fal.secagg.messages import HEADER_BYTES, SERVER, Header, decode, encode, peek_header
from secure_fal.secagg.transport import Faults


def test_a_configuration_whose_sum_float64_cannot_hold_exactly_is_refused_naming_round_and_field():
    # f = 24, bound 1e9, n = 10 reaches 1.7e17 grid units > 2^53: refused instead of decoded 16 steps off
    with pytest.raises(InputError, match="2\\^53") as err:
        FixedPoint(1e9, 24, 10)
    assert err.value.field == "bound"
    agg = Aggregator("masking", range(10))
    with pytest.raises(InputError) as err:
        agg.sum({c: np.zeros(3) for c in range(10)}, bound=1e9)
    assert (err.value.round_id, err.value.field) == (1, "bound")
    for bad, field in ((dict(bound=float("nan")), "bound"), (dict(frac_bits=60), "frac_bits"),
                       (dict(n_clients=0), "n_clients")):
        with pytest.raises(InputError) as err:
            FixedPoint(**{"bound": 1.0, "frac_bits": 24, "n_clients": 3, **bad})
        assert err.value.field == field


def test_the_largest_allowed_sum_decodes_exactly():
    enc = FixedPoint(2.0 ** 51, 0, 4)   # 4 x 2^51 = 2^53 grid units: the edge of exactness
    assert 4 * enc.max_abs_int == MAX_EXACT
    xs = {c: np.full(3, 2 ** 51 - c, dtype=np.int64) for c in range(4)}
    total = secure_sum("masking", xs, bound=2.0 ** 51, frac_bits=0).total
    assert total[0] == sum(2 ** 51 - c for c in range(4))


def test_integer_inputs_above_2_53_are_compared_exactly_never_rounded():
    bound = 2.0 ** 53   # one client, f = 0: exactly at the limit
    big = np.array([2 ** 53 + 1], dtype=np.int64)   # float64(2^53 + 1) == 2^53 would pass the bound
    with pytest.raises(InputError, match="index 0") as err:
        secure_sum("plaintext", {0: big}, bound=bound, frac_bits=0)
    assert "9007199254740993" not in str(err.value)     # the value itself never appears
    q = FixedPoint(bound, 0, 1).quantize(np.array([2 ** 53 - 1], dtype=np.int64))
    assert q[0] == 2 ** 53 - 1
    assert FixedPoint(bound, 0, 1).quantize(big, clip=True)[0] == 2 ** 53


def test_input_errors_name_the_index_never_the_value():
    secret = 0.123456789
    with pytest.raises(InputError) as err:
        FixedPoint(0.1, 24, 2).quantize(np.array([0.0, secret]), client=3, round_id=5)
    assert "0.123" not in str(err.value) and "index 1" in str(err.value) and err.value.client == 3


def test_prg_errors_carry_no_seed_bytes():
    seed = b"\xaa" * 31
    with pytest.raises(ValueError) as err:
        prg.expand(seed, 4)
    assert "\\xaa" not in str(err.value) and "aa" not in str(err.value).lower().replace("has", "")


def test_two_aggregators_with_the_same_seed_have_fresh_sessions_and_refuse_each_others_messages():
    a, b = Aggregator("masking", range(3), seed=0), Aggregator("masking", range(3), seed=0)
    assert a.session != b.session
    recorded = []
    xs = {c: np.zeros(4) for c in range(3)}
    a.sum(xs, bound=1.0, faults=Faults(in_flight=lambda h, d: recorded.append(d) or [d]))
    foreign = next(d for d in recorded if peek_header(d).sender == 1)

    def inject(header, data):
        return [foreign, data] if header.sender == 1 and header.kind == peek_header(foreign).kind else [data]

    with pytest.raises(ReplayError, match="session"):
        b.sum(xs, bound=1.0, faults=Faults(in_flight=inject))


def test_header_level_rejections_at_a_client_name_that_client():
    agg = Aggregator("masking", range(3))
    proto = agg.protocol
    from secure_fal.secagg.machine import RoundSpec
    spec = RoundSpec(agg.session, 1, (0, 1, 2), 4, FixedPoint(1.0, 24, 3))
    client = proto.client(2, spec, np.zeros(4))
    request = proto.server(spec).start()[2]
    for bad in (request[:HEADER_BYTES - 1], request + b"\0", b"XX" + request[2:]):
        with pytest.raises(MessageError) as err:
            client.receive(bad)
        assert err.value.client == 2 and err.value.round_id == 1


def test_a_dict_field_with_a_duplicated_key_is_refused():
    key = bytes(64)
    body = struct.pack(">I", 2) + 2 * (struct.pack(">qI", 1, len(key)) + key)
    header = Header(PROTOCOL_ID, PeerKeys.KIND, 1, 1, SERVER, 0)
    good = encode(header, PeerKeys({1: key}))
    data = good[:HEADER_BYTES - 4] + struct.pack(">I", len(body)) + body
    with pytest.raises(MessageError, match="appears twice") as err:
        decode(data, KINDS, PROTOCOL_ID)
    assert err.value.field == "keys"


def test_seal_objects_pass_only_through_anonymous_memory_files():
    seen = []

    class Spy:
        def save(self, path):
            seen.append(os.readlink(path))
            with open(path, "wb") as f:
                f.write(b"secret key bytes")

    assert ckks_context._save(Spy()) == b"secret key bytes"
    assert len(seen) == 1 and re.match(r"/memfd:secure_fal_seal", seen[0])
    assert not hasattr(ckks_context, "tempfile")
