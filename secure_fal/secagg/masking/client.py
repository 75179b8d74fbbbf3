"""Client machine of the masking protocol (protocols/masking.md; overview in protocol.py)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DecryptionError, DropoutError, MessageError
from ..machine import ClientMachine, RoundSpec
from ..messages import SERVER
from . import keys
from . import shamir
from .graph import Neighbourhoods, check_peer_keys, check_relayed_shares
from .keys import MASK, SHARE
from .messages import (KINDS, PEER_KEYS_BYTES, PROTOCOL_ID, Advertise, AdvertiseRequest, MaskedInput, PeerKeys,
                       RelayedShares, Shares, Unmask, UnmaskRequest)
from .prg import SEED_BYTES, MaskAccumulator


class MaskingClient(ClientMachine):
    """Client of one masking round. Refuses any unmask request that would reveal its input (see
    ``_on_unmask_request`` and protocols/masking.md §Honest client checks)."""

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, cid: int, spec: RoundSpec, vector: np.ndarray, graph: Neighbourhoods) -> None:
        super().__init__(cid, spec, vector)
        self.graph = graph
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
                    "unmask": (UnmaskRequest, self._on_unmask_request)}
        kind, handler = handlers.get(self.phase, ((), None))
        _, msg = self.accept_from_server(data, kind if handler else ())
        return handler(msg)

    def _fail(self, cls: type, what: str, client: int | None, field: str) -> Exception:
        return cls(what, client=client, round_id=self.spec.round_id, field=field)

    def _on_advertise_request(self, msg: AdvertiseRequest) -> list[bytes]:
        self._c_sk, self._s_sk = keys.new_private_key(), keys.new_private_key()
        self.phase = "share"
        return [self.send(SERVER, Advertise(keys.public_bytes(self._c_sk), keys.public_bytes(self._s_sk)))]

    def _on_peer_keys(self, msg: PeerKeys) -> list[bytes]:
        me, t, spec = self.me, self.graph.threshold, self.spec
        check_peer_keys(msg.keys, self.graph.of(me), me, t, spec.round_id)
        share_keys, mask_seeds = {}, {}
        for v, both in msg.keys.items():
            if len(both) != PEER_KEYS_BYTES:
                raise self._fail(MessageError, f"c_pk || s_pk of {len(both)} bytes, expected {PEER_KEYS_BYTES}",
                                 v, "keys")
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
        return [self.send(SERVER, Shares(sealed))]

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
        self.phase = "unmask"
        return [self.send(SERVER, MaskedInput(y))]

    def _on_unmask_request(self, msg: UnmaskRequest) -> list[bytes]:
        """Answer with b-shares of ``survivors`` and s_sk-shares of ``dropped`` after these checks:

        1. no id is listed twice, and none is both a survivor and dropped (revealing both shares of
           one client would let the server unmask its input);
        2. this client is a survivor (it sent its masked input; it never reveals its own s_sk share);
        3. every listed id is one whose shares this client holds: itself or a neighbour that shared
           with it (the neighbours it masked with); so "dropped" ones are ones whose masks y_u contains;
        4. at least t survivors in this client's closed neighbourhood (else the sum would cover too
           few inputs and the server could not finish anyway).
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
        b_held = {**{v: b for v, (b, _) in self._held.items()}, me: self._own_b_share}
        self.phase = "done"
        return [self.send(SERVER, Unmask({v: shamir.encode_share(b_held[v]) for v in sorted(survivors)},
                                         {v: shamir.encode_share(self._held[v][1]) for v in sorted(dropped)}))]
