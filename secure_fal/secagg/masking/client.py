"""Client machine of the masking protocol (protocols/masking.md; overview in protocol.py).

Active mode (an ``Identity`` and the session's ``Roster`` given): the client signs its Advertise, verifies every
peer key's signature, signs the U3 of the consistency round, and reveals shares only as §Consistency round says.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DecryptionError, DropoutError, MessageError
from ..identity import SIGNATURE_BYTES, Identity, Roster
from ..machine import ClientMachine, RoundSpec
from ..messages import SERVER
from . import keys
from . import shamir
from .graph import Neighbourhoods, check_peer_keys, check_relayed_shares
from .keys import MASK, SHARE
from .messages import (KINDS, PEER_KEYS_BYTES, PROTOCOL_ID, Advertise, AdvertiseRequest, ConsistencyRequest,
                       ConsistencySignature, MaskedInput, PeerKeys, RelayedShares, Shares, Unmask, UnmaskRequest)
from .prg import SEED_BYTES, MaskAccumulator


class MaskingClient(ClientMachine):
    """Client of one masking round. Refuses any unmask request that would reveal its input (see
    ``_on_unmask_request`` and protocols/masking.md §Honest client checks).

    Args:
        graph: the round's graph and threshold (active mode: with the adjacency of every client, for the
            two-hop signature check).
        identity, roster: active mode: this client's signing key and the session's roster (both or neither).
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, cid: int, spec: RoundSpec, vector: np.ndarray, graph: Neighbourhoods,
                 identity: Identity | None = None, roster: Roster | None = None) -> None:
        super().__init__(cid, spec, vector)
        if (identity is None) != (roster is None):
            raise ValueError("active mode needs both a signing identity and the roster")
        self.graph = graph
        self.identity, self.roster = identity, roster
        self._u3: tuple[int, ...] | None = None   # active mode: the U3 this client signed
        self.phase = "advertise"
        self._c_sk = self._s_sk = None  # fresh X25519 key pairs, made when the server opens the round
        self._share_keys: dict[int, bytes] = {}   # v -> AES key for shares exchanged with v
        self._mask_seeds: dict[int, bytes] = {}   # v -> s_uv
        self._own_b_share: int | None = None  # this client's share of its own b (its own s_sk share is never revealed)
        self._self_seed: bytes | None = None
        self._held: dict[int, tuple[int, int]] = {}  # v -> (share of b_v, share of s_sk_v): U2 and N(u)

    def receive(self, data: bytes) -> list[bytes]:
        handlers = {"advertise": (AdvertiseRequest, self._on_advertise_request),
                    "share": (PeerKeys, self._on_peer_keys),
                    "masked_input": (RelayedShares, self._on_relayed_shares),
                    "consistency": (ConsistencyRequest, self._on_consistency_request),
                    "unmask": (UnmaskRequest, self._on_unmask_request)}
        kind, handler = handlers.get(self.phase, ((), None))
        _, msg = self.accept_from_server(data, kind if handler else ())
        return handler(msg)

    def _fail(self, cls: type, what: str, client: int | None, field: str) -> Exception:
        return cls(what, client=client, round_id=self.spec.round_id, field=field)

    @property
    def active(self) -> bool:
        return self.roster is not None

    def _on_advertise_request(self, msg: AdvertiseRequest) -> list[bytes]:
        self._c_sk, self._s_sk = keys.new_private_key(), keys.new_private_key()
        c_pk, s_pk = keys.public_bytes(self._c_sk), keys.public_bytes(self._s_sk)
        spec = self.spec
        signature = self.identity.sign(keys.advertise_statement(spec.session, spec.round_id, self.me, c_pk, s_pk)) \
            if self.active else b""
        self.phase = "share"
        return [self.send(SERVER, Advertise(c_pk, s_pk, signature))]

    def _verified_keys(self, v: int, entry: bytes) -> bytes:
        """Neighbour v's c_pk || s_pk from a PeerKeys entry; in active mode its signature is checked against the
        roster first (MessageError naming v, field 'keys')."""
        size = PEER_KEYS_BYTES + (SIGNATURE_BYTES if self.active else 0)
        if len(entry) != size:
            raise self._fail(MessageError, f"peer keys of {len(entry)} bytes, expected {size}", v, "keys")
        both = entry[:PEER_KEYS_BYTES]
        if self.active:
            spec = self.spec
            self.roster.verify(v, keys.advertise_statement(spec.session, spec.round_id, v, both[:32], both[32:]),
                               entry[PEER_KEYS_BYTES:], round_id=spec.round_id, field="keys")
        return both

    def _on_peer_keys(self, msg: PeerKeys) -> list[bytes]:
        me, t, spec = self.me, self.graph.threshold, self.spec
        check_peer_keys(msg.keys, self.graph.of(me), me, t, spec.round_id)
        share_keys, mask_seeds = {}, {}
        for v, entry in msg.keys.items():
            both = self._verified_keys(v, entry)
            for name, store, sk, pk, purpose in (("c_pk", share_keys, self._c_sk, both[:32], SHARE),
                                                 ("s_pk", mask_seeds, self._s_sk, both[32:], MASK)):
                try:
                    store[v] = keys.pair_key(sk, pk, purpose, spec.session, spec.round_id, me, v)
                except ValueError as exc:
                    raise self._fail(MessageError, f"unusable public key: {exc}", v, name) from None
        self_seed = os.urandom(SEED_BYTES)
        holders = sorted(msg.keys) + [me]
        b_shares = shamir.split(self_seed, t, holders)
        s_shares = shamir.split(keys.private_bytes(self._s_sk), t, holders)
        sealed = {v: keys.seal(share_keys[v], spec.session, spec.round_id, me, v,
                               shamir.encode_share(b_shares[v]) + shamir.encode_share(s_shares[v]))
                  for v in sorted(msg.keys)}
        self._share_keys, self._mask_seeds, self._self_seed = share_keys, mask_seeds, self_seed
        self._own_b_share = b_shares[me]
        self.phase = "masked_input"
        return [self.send(SERVER, Shares(sealed, keys.commit(self_seed, spec.session, spec.round_id, me)))]

    def _on_relayed_shares(self, msg: RelayedShares) -> list[bytes]:
        me, t, spec = self.me, self.graph.threshold, self.spec
        check_relayed_shares(msg.ciphertexts, self._share_keys, me, t, spec.round_id)
        held = {}
        for v, ct in msg.ciphertexts.items():
            try:
                plain = keys.open_sealed(self._share_keys[v], spec.session, spec.round_id, v, me, ct)
            except keys.InvalidTag:
                raise self._fail(DecryptionError, f"share ciphertext from client {v} to client {me} in round "
                                 f"{spec.round_id} failed authentication", v, "ciphertexts") from None
            e = shamir.ELEMENT_BYTES
            try:
                held[v] = (shamir.decode_share(plain[:e]), shamir.decode_share(plain[e:]))
            except ValueError as exc:
                raise self._fail(MessageError, f"bad share plaintext: {exc}", v, "ciphertexts") from None
        self._held = held
        return self._masked_input()

    def _masked_input(self) -> list[bytes]:
        """y_u = q_u + PRG(b_u) + sum_{v in held, v > u} PRG(s_uv) - sum_{v in held, v < u} PRG(s_uv) (mod 2^k)."""
        me, enc = self.me, self.spec.encoding
        acc = MaskAccumulator(enc.to_ring(self.quantized))
        acc.add(self._self_seed)
        for v in sorted(self._held):
            (acc.add if v > me else acc.sub)(self._mask_seeds[v])
        y = enc.pack(acc.reduce(enc.ring_mask))
        self.phase = "consistency" if self.active else "unmask"
        return [self.send(SERVER, MaskedInput(y))]

    def _on_consistency_request(self, msg: ConsistencyRequest) -> list[bytes]:
        """Sign the U3 the server claims, once: it must list this client, hold no id twice, contain no neighbour
        this client did not mask with (U3 and N(u) within the senders of its relayed shares: else the server,
        having relayed only some neighbours' shares, could list those as dropped and unmask y_u alone), and give
        this client at least t survivors in N[u] (else DropoutError: the server could not finish anyway)."""
        me, spec, u3 = self.me, self.spec, msg.survivors
        if list(u3) != sorted(set(u3)) or not set(u3) <= set(spec.clients):
            raise self._fail(MessageError, "U3 is not a sorted set of this round's clients", None, "survivors")
        if me not in u3:
            raise self._fail(MessageError, f"refusing: client {me} sent its masked input but is not in U3", me,
                             "survivors")
        unmasked = sorted(set(u3) & set(self.graph.of(me)) - set(self._held))
        if unmasked:
            raise self._fail(MessageError, f"refusing: U3 lists neighbour {unmasked[0]}, whose shares client {me} "
                             "never received (it did not mask with it)", unmasked[0], "survivors")
        if len(self.graph.closed(me) & set(u3)) < self.graph.threshold:
            raise self._fail(DropoutError, f"refusing: fewer than t={self.graph.threshold} of client {me}'s "
                             "neighbourhood in U3", me, "survivors")
        self._u3 = tuple(u3)
        self.phase = "unmask"
        signature = self.identity.sign(keys.consistency_statement(spec.session, spec.round_id, me, self._u3))
        return [self.send(SERVER, ConsistencySignature(signature))]

    def _check_signed_u3(self, msg: UnmaskRequest, survivors: set[int], dropped: set[int]) -> None:
        """Active mode (§Consistency round): the request must be exactly what the signed U3 implies (b-shares of
        U3 and s_sk-shares of none of it: never both secrets of one client), and every client w whose shares
        this client reveals must have at least t valid signatures on this same U3 from its N[w]."""
        me, spec, u3, t = self.me, self.spec, set(self._u3), self.graph.threshold
        mine = set(self._held) | {me}
        if survivors != mine & u3 or dropped != set(self._held) - u3:
            raise self._fail(MessageError, "refusing: the unmask request does not match the U3 this client signed",
                             me, "survivors")
        valid: dict[int, bool] = {}
        for w in sorted(survivors | dropped):
            count = 0
            for signer in sorted(self.graph.closed(w) & u3 & set(msg.signatures)):
                if signer not in valid:
                    valid[signer] = self.roster.valid(signer, keys.consistency_statement(
                        spec.session, spec.round_id, signer, self._u3), msg.signatures[signer])
                count += valid[signer]
                if count >= t:
                    break
            if count < t:
                raise self._fail(MessageError, f"refusing: {count} valid signatures on U3 from the neighbourhood of "
                                 f"client {w}, t={t} needed", w, "signatures")

    def _on_unmask_request(self, msg: UnmaskRequest) -> list[bytes]:
        """Answer with b-shares of ``survivors`` and s_sk-shares of ``dropped`` after these checks:

        1. no id is listed twice, and none is both a survivor and dropped (revealing both shares of
           one client would let the server unmask its input);
        2. this client is a survivor (it sent its masked input; it never reveals its own s_sk share);
        3. every listed id is one whose shares this client holds: itself or a neighbour that shared
           with it (the neighbours it masked with); so "dropped" ones are ones whose masks y_u contains;
        4. at least t survivors in this client's closed neighbourhood (else the sum would cover too
           few inputs and the server could not finish anyway);
        5. active mode: ``_check_signed_u3``.
        """
        me, t = self.me, self.graph.threshold
        survivors, dropped = set(msg.survivors), set(msg.dropped)
        if len(survivors) != len(msg.survivors) or len(dropped) != len(msg.dropped):
            raise self._fail(MessageError, "an id is listed twice", None, "survivors")
        both = sorted(survivors & dropped)
        if both:
            raise self._fail(MessageError, f"refusing: client {both[0]} listed both as survivor and as dropped",
                             both[0], "dropped")
        if me not in survivors:
            raise self._fail(MessageError, f"refusing: client {me} sent its masked input but is not listed as a "
                             "survivor", me, "survivors")
        unknown = sorted((survivors | dropped) - set(self._held) - {me})
        if unknown:
            raise self._fail(MessageError, f"refusing: client {me} holds no shares of client {unknown[0]}",
                             unknown[0], "survivors" if unknown[0] in survivors else "dropped")
        if len(survivors) < t:
            raise self._fail(DropoutError, f"refusing: only {len(survivors)} survivors among client {me}'s "
                             f"neighbourhood, threshold t={t}", me, "survivors")
        if self.active:
            self._check_signed_u3(msg, survivors, dropped)
        b_held = {**{v: b for v, (b, _) in self._held.items()}, me: self._own_b_share}
        self.phase = "done"
        return [self.send(SERVER, Unmask({v: shamir.encode_share(b_held[v]) for v in sorted(survivors)},
                                         {v: shamir.encode_share(self._held[v][1]) for v in sorted(dropped)}))]
