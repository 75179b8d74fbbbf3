"""Server machine of the masking protocol (protocols/masking.md; overview in protocol.py).

The server collects each phase until every client still in the round has answered or ``on_timeout`` is
called, then checks that enough clients remain (per closed neighbourhood, against the threshold t) before
moving on: too few raise DropoutError and no partial result is ever released. Active mode (a ``Roster``):
Advertise signatures are checked, and a consistency phase (signed U3) runs between masked_input and unmask.
Every rebuilt secret is verified (self-mask seeds against their commitments, mask keys against s_pk) before
it is used (§Verifiable reconstruction).
"""

from __future__ import annotations

import numpy as np

from ..errors import DropoutError, MessageError
from ..identity import Roster
from ..machine import RoundSpec, ServerMachine
from . import keys
from . import shamir
from .graph import Neighbourhoods, check_holders
from .keys import MASK
from .messages import (COMMITMENT_BYTES, KINDS, PROTOCOL_ID, SHARE_CIPHERTEXT_BYTES, Advertise, AdvertiseRequest,
                       ConsistencyRequest, ConsistencySignature, MaskedInput, PeerKeys, RelayedShares, Shares, Unmask,
                       UnmaskRequest)
from .prg import MaskAccumulator


class MaskingServer(ServerMachine):
    """Server of one masking round. Sees public keys, ciphertexts, masked vectors and revealed shares.

    Attributes (the sets of the module docstring, filled phase by phase):
        public_keys: U1, id -> (c_pk, s_pk).
        sealed: U2, sender -> {recipient: ciphertext}.
        commitments: U2, id -> the 32-byte commitment to its b_u.
        masked: U3, id -> y_u as uint64 residues (L,).
        signatures: active mode, the clients of U3 that signed it -> signature.
        requests: the clients asked to unmask (U3; active mode: the signers), id -> (survivors, dropped).
        revealed: U4, id -> ({v: b-share}, {v: s_sk-share}).
        excluded: clients whose Advertise carried a refused key (``keys.check_public_key``: wrong length,
            non-canonical, low order; active mode: a bad signature) -> the MessageError naming client, round and
            field; they are out of U1.
        faulty: after the result, holder -> the owners whose shares it revealed off the verified polynomial (a
            client that lied; its lie was outvoted and the sum is exact).
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, spec: RoundSpec, graph: Neighbourhoods, roster: Roster | None = None) -> None:
        super().__init__(spec)
        self.graph = graph
        self.roster = roster
        self.public_keys: dict[int, tuple[bytes, bytes]] = {}
        self.signed_keys: dict[int, bytes] = {}
        self.commitments: dict[int, bytes] = {}
        self.signatures: dict[int, bytes] = {}
        self.faulty: dict[int, tuple[int, ...]] = {}
        self.sealed: dict[int, dict[int, bytes]] = {}
        self.masked: dict[int, np.ndarray] = {}
        self.requests: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.revealed: dict[int, tuple[dict[int, int], dict[int, int]]] = {}
        self.excluded: dict[int, MessageError] = {}

    def start(self) -> list[bytes]:
        self.phase = "advertise"
        return [self.send(cid, AdvertiseRequest()) for cid in self.spec.clients]

    def receive(self, data: bytes) -> list[bytes]:
        if self.phase == "advertise":
            return self._on_advertise(data)
        if self.phase == "share":
            return self._on_shares(data)
        if self.phase == "masked_input":
            return self._on_masked_input(data)
        if self.phase == "consistency":
            return self._on_consistency(data)
        if self.phase == "unmask":
            return self._on_unmask(data)
        self.accept(data, ())  # raises: nothing is accepted before start() or after the result
        return []

    def on_timeout(self) -> list[bytes]:
        """Close the current phase with the clients that answered; the others count as dropped."""
        if self.phase == "advertise":
            return self._close_advertise()
        if self.phase == "share":
            return self._close_share()
        if self.phase == "masked_input":
            return self._close_masked_input()
        if self.phase == "consistency":
            return self._close_consistency()
        if self.phase == "unmask":
            self._finish(self.revealed)
        return []

    # -- receiving, one method per phase: validate everything, then store -----------------------------

    def _on_advertise(self, data: bytes) -> list[bytes]:
        header, msg = self.accept_from_client(data, (Advertise,), {**self.public_keys, **self.excluded})
        u = header.sender
        refused = keys.screen_public_keys([("c_pk", msg.c_pk), ("s_pk", msg.s_pk)], u, header.round_id)
        if refused is None and self.roster is not None:
            statement = keys.advertise_statement(self.spec.session, self.spec.round_id, u, msg.c_pk, msg.s_pk)
            if not self.roster.valid(u, statement, msg.signature):
                refused = MessageError("invalid Advertise signature; the client is excluded from the round",
                                       client=u, round_id=header.round_id, field="signature")
        if refused is not None:  # a bad key excludes its client, not the round (its peers would all refuse it)
            self.excluded[u] = refused
        else:
            self.public_keys[u] = (msg.c_pk, msg.s_pk)
            self.signed_keys[u] = msg.signature
        complete = len(self.public_keys) + len(self.excluded) == len(self.spec.clients)
        return self._close_advertise() if complete else []

    def _on_shares(self, data: bytes) -> list[bytes]:
        u, msg = self.accept_after(data, Shares, self.sealed, self.public_keys, "advertise")
        expected = set(self.graph.of(u)) & self.public_keys.keys()
        if set(msg.ciphertexts) != expected:
            raise MessageError(f"ciphertexts for {sorted(msg.ciphertexts)}, expected one for each neighbour that "
                               f"advertised: {sorted(expected)}", client=u, round_id=self.spec.round_id,
                               field="ciphertexts")
        for v, ct in msg.ciphertexts.items():
            if len(ct) != SHARE_CIPHERTEXT_BYTES:
                raise MessageError(f"ciphertext for client {v} has {len(ct)} bytes, expected "
                                   f"{SHARE_CIPHERTEXT_BYTES}", client=u, round_id=self.spec.round_id,
                                   field="ciphertexts")
        if len(msg.commitment) != COMMITMENT_BYTES:
            raise MessageError(f"commitment of {len(msg.commitment)} bytes, expected {COMMITMENT_BYTES}", client=u,
                               round_id=self.spec.round_id, field="commitment")
        self.sealed[u] = dict(msg.ciphertexts)
        self.commitments[u] = msg.commitment
        return self._close_share() if len(self.sealed) == len(self.public_keys) else []

    def _on_masked_input(self, data: bytes) -> list[bytes]:
        u, msg = self.accept_after(data, MaskedInput, self.masked, self.sealed, "share")
        try:
            values = self.spec.encoding.unpack(msg.values, self.spec.length)
        except ValueError as exc:
            raise MessageError(f"masked vector: {exc}", client=u, round_id=self.spec.round_id,
                               field="values") from None
        self.masked[u] = values
        return self._close_masked_input() if len(self.masked) == len(self.sealed) else []

    def _on_consistency(self, data: bytes) -> list[bytes]:
        u, msg = self.accept_after(data, ConsistencySignature, self.signatures, self.masked, "masked_input")
        statement = keys.consistency_statement(self.spec.session, self.spec.round_id, u, tuple(sorted(self.masked)))
        self.roster.verify(u, statement, msg.signature, round_id=self.spec.round_id, field="signature")
        self.signatures[u] = msg.signature
        return self._close_consistency() if len(self.signatures) == len(self.masked) else []

    def _on_unmask(self, data: bytes) -> list[bytes]:
        previous = "consistency" if self.roster is not None else "masked_input"
        u, msg = self.accept_after(data, Unmask, self.revealed, self.requests, previous)
        survivors, dropped = self.requests[u]
        parsed = []
        for name, got, asked in (("b_shares", msg.b_shares, survivors), ("s_shares", msg.s_shares, dropped)):
            if set(got) != set(asked):
                raise MessageError(f"shares of {sorted(got)}, asked for {sorted(asked)}", client=u,
                                   round_id=self.spec.round_id, field=name)
            try:
                parsed.append({v: shamir.decode_share(s) for v, s in got.items()})
            except ValueError as exc:
                raise MessageError(str(exc), client=u, round_id=self.spec.round_id, field=name) from None
        revealed = {**self.revealed, u: (parsed[0], parsed[1])}
        if len(revealed) == len(self.requests):
            self._finish(revealed)  # raises before anything is stored if a secret cannot be recovered
        self.revealed = revealed
        return []

    # -- closing phases: check that enough clients remain, then move on --------------------------------

    def _require(self, alive: set[int], owners: set[int], closed: bool, what: str) -> None:
        """DropoutError unless every owner in ``owners`` has >= t share holders among ``alive``."""
        check_holders(self.graph, alive, owners, closed, what, self.phase, self.spec.round_id)

    def _close_advertise(self) -> list[bytes]:
        u1 = set(self.public_keys)
        self._require(u1, u1, True, "too few neighbours advertised keys")
        self.phase = "share"
        return [self.send(u, PeerKeys({v: b"".join(self.public_keys[v]) + self.signed_keys[v]
                                       for v in self.graph.of(u) if v in u1}))
                for u in sorted(u1)]

    def _close_share(self) -> list[bytes]:
        u2 = set(self.sealed)
        self._require(u2, u2, True, "too few neighbours shared their secrets")
        self.phase = "masked_input"
        return [self.send(u, RelayedShares({v: self.sealed[v][u] for v in self.graph.of(u) if v in u2}))
                for u in sorted(u2)]

    def _dropped_after_sharing(self) -> tuple[set[int], set[int]]:
        """(U2 minus U3, those of them with a neighbour in U3: whose mask keys must be reconstructed)."""
        u3 = set(self.masked)
        gone = set(self.sealed) - u3
        return gone, {w for w in gone if u3 & set(self.graph.of(w))}

    def _close_masked_input(self) -> list[bytes]:
        u3 = set(self.masked)
        _, needed = self._dropped_after_sharing()
        self._require(u3, u3, True, "too few neighbours sent their masked input")
        self._require(u3, needed, False, "too few neighbours of this dropped client remain to remove its masks")
        parts = self.graph.components(u3)
        if len(parts) > 1:  # the masks of each part would cancel on their own: its sum would be revealed
            raise DropoutError(f"the clients whose masked input arrived split into {len(parts)} groups with no "
                               f"neighbour in another group (those of {sorted(map(min, parts))}): each group's sum "
                               "would be revealed; no result is released", round_id=self.spec.round_id)
        if self.roster is not None:
            self.phase = "consistency"
            request = ConsistencyRequest(tuple(sorted(u3)))
            return [self.send(u, request) for u in sorted(u3)]
        return self._ask_unmask(u3, {})

    def _close_consistency(self) -> list[bytes]:
        """Active mode: the signers of U3 are asked to unmask, each with the signatures of the signers within
        two hops (the members of N[w] for each w whose shares it reveals); every U3 member and every dropped
        client whose masks are in the sum needs t signers among its holders (else DropoutError)."""
        signers = set(self.signatures)
        _, needed = self._dropped_after_sharing()
        self._require(signers, set(self.masked), True, "too few of this client's neighbours signed U3")
        self._require(signers, needed, False, "too few of this dropped client's neighbours signed U3")
        return self._ask_unmask(signers, self.signatures)

    def _ask_unmask(self, asked: set[int], signatures: dict[int, bytes]) -> list[bytes]:
        u3 = set(self.masked)
        gone, _ = self._dropped_after_sharing()
        requests = {u: (tuple(sorted(self.graph.closed(u) & u3)), tuple(sorted(set(self.graph.of(u)) & gone)))
                    for u in sorted(asked)}
        self.requests = requests
        self.phase = "unmask"
        out = []
        for u in sorted(asked):
            near = set().union(*(self.graph.closed(w) for w in self.graph.closed(u))) if signatures else set()
            out.append(self.send(u, UnmaskRequest(*requests[u], {v: signatures[v] for v in sorted(near & asked)})))
        return out

    def _finish(self, revealed: dict[int, tuple[dict[int, int], dict[int, int]]]) -> None:
        """Reconstruct the secrets, remove every mask, decode. Sets result only if all of it succeeds."""
        u3, u4 = set(self.masked), set(revealed)
        _, needed = self._dropped_after_sharing()
        self._require(u4, u3, True, "too few holders revealed shares of this client's self-mask")
        self._require(u4, needed, False, "too few holders revealed shares of this dropped client's mask key")
        session, round_id = self.spec.session, self.spec.round_id
        faulty: dict[int, set[int]] = {}
        self_seeds = {}
        for u in sorted(u3):
            shares = {h: revealed[h][0][u] for h in self.graph.closed(u) & u4}
            self_seeds[u] = self._rebuild(shares, lambda b, u=u: keys.commit(b, session, round_id, u)
                                          == self.commitments[u], u, "b_shares", "self-mask seed", faulty)
        pair_seeds: list[tuple[int, int, bytes]] = []  # (survivor u, dropped w, s_uw)
        for w in sorted(needed):
            shares = {h: revealed[h][1][w] for h in set(self.graph.of(w)) & u4}
            raw = self._rebuild(shares, lambda sk, w=w: keys.public_bytes(keys.private_from_bytes(sk))
                                == self.public_keys[w][1], w, "s_shares", "mask key", faulty)
            s_sk = keys.private_from_bytes(raw)
            for u in sorted(set(self.graph.of(w)) & u3):
                seed = keys.pair_key(s_sk, self.public_keys[u][1], MASK, session, round_id, w, u)
                pair_seeds.append((u, w, seed))
        acc = MaskAccumulator(np.zeros(self.spec.length, dtype=np.uint64))
        for u in sorted(u3):
            np.add(acc.total, self.masked[u], out=acc.total)
            acc.sub(self_seeds[u])
        for u, w, seed in pair_seeds:
            (acc.sub if w > u else acc.add)(seed)  # y_u holds +PRG(s_uw) when w > u, -PRG(s_uw) when w < u
        enc = self.spec.encoding
        self.faulty = {h: tuple(sorted(owners)) for h, owners in sorted(faulty.items())}
        self.contributors = tuple(sorted(u3))
        self.result = enc.dequantize(enc.from_ring(acc.reduce(enc.ring_mask)))
        self.phase = "done"

    def _rebuild(self, shares: dict[int, int], check, owner: int, field: str, what: str,
                 faulty: dict[int, set[int]]) -> bytes:
        """One verified secret (``shamir.reconstruct_verified``): holders whose shares are off the verified
        polynomial go to ``faulty``; MessageError naming the owner, the round, the field and the holders when no
        consistent subset checks (nothing is released)."""
        try:
            secret, off = shamir.reconstruct_verified(shares, self.graph.threshold, check)
        except ValueError as exc:
            raise MessageError(f"cannot reconstruct a verified {what}: {exc}; the shares of holders "
                               f"{sorted(shares)} disagree", client=owner, round_id=self.spec.round_id,
                               field=field) from None
        for h in off:
            faulty.setdefault(h, set()).add(owner)
        return secret
