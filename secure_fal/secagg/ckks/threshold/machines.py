"""The machines of a threshold CKKS round (spec: protocols/ckks.md §Threshold mode):

    server -> every client       InputRequest
    client -> server             Ciphertext      c0 = -a_b s_i + e + Delta m   per block b, NTT form, packed
    server -> each responder     PartialRequest  (C, T, signed inputs)         T: t live committee members
    responder j -> server        Partial         lambda_j^T a_b sum_{i in C} sh_i(j) + smudge_j   per block

The server adds the c0 of the contributors C and the t partials; the result is Delta M + E + smudges, rounded to
M, checked against the noise bound and the sum's range, and released only if both hold. A responder answers at
most once per (session, round) (its machine claims the round in the registry), only for C of at least its
``min_contributors`` clients whose shares it holds, and (active mode) only when every contributor's signature on
its c0 digest of this round verifies; it signs its partial with (C, T).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ...errors import DecryptionError, DropoutError, InputError, MessageError
from ...identity import Identity, Roster, ids_bytes, statement
from ...machine import ClientMachine, RoundSpec, ServerMachine
from ...messages import SERVER
from ..machines import check_signed_inputs
from .messages import KINDS, PROTOCOL_ID, Ciphertext, InputRequest, Partial, PartialRequest
from .params import ThresholdParams, ThresholdPlan
from .ring import derive_uniform, pack_residues, sample_error, sample_uniform_residues, unpack_residues
from .setup import ThresholdKeys


def public_polynomials(params: ThresholdParams, spec: RoundSpec, plan: ThresholdPlan) -> np.ndarray:
    """a_{r,b} for every block b of round ``spec``, in NTT form (blocks, k, N): SHAKE-256 of (session, round, b),
    read directly as evaluations (the NTT of a uniform polynomial is uniform)."""
    ring = params.ring
    return np.stack([derive_uniform(ring, plan.primes, b"secure_fal/ckks-threshold/a/v1" +
                                    spec.session.to_bytes(8, "big") + spec.round_id.to_bytes(4, "big") +
                                    b.to_bytes(4, "big")) for b in range(plan.blocks)])


def input_statement(spec: RoundSpec, cid: int, digest: bytes) -> bytes:
    """What a contributor signs (active mode): SHA-256 of its packed c0, for this session and round."""
    return statement(b"ckks-threshold/input", spec.session, spec.round_id, cid, digest)


def partial_statement(spec: RoundSpec, cid: int, contributors: tuple[int, ...], responders: tuple[int, ...],
                      digest: bytes) -> bytes:
    """What a responder signs (active mode): C, T and the SHA-256 of its packed partial."""
    return statement(b"ckks-threshold/partial", spec.session, spec.round_id, cid, ids_bytes(contributors),
                     ids_bytes(responders), digest)


def lagrange_at_zero(primes: tuple[int, ...], responders: tuple[int, ...], me: int) -> np.ndarray:
    """lambda_me^T mod each prime (k, 1): prod over l in T, l != me of x_l / (x_l - x_me), x = id + 1."""
    out = []
    for p in primes:
        num = den = 1
        for other in responders:
            if other != me:
                num = num * (other + 1) % p
                den = den * (other - me) % p
        out.append(num * pow(den, -1, p) % p)
    return np.array(out, dtype=np.uint64)[:, None]


def _unpack(plan: ThresholdPlan, params: ThresholdParams, data: bytes, *, client: int, round_id: int,
            field: str) -> np.ndarray:
    """Packed residues -> (blocks, k, N), each below its prime; MessageError naming client, round, field."""
    ring = params.ring
    try:
        x = unpack_residues(data, plan.width, (plan.blocks, plan.primes, ring.n))
    except ValueError as exc:
        raise MessageError(str(exc), client=client, round_id=round_id, field=field) from None
    if (x >= ring.moduli(plan.primes)).any():
        raise MessageError("a residue is not below its prime", client=client, round_id=round_id, field=field)
    return x


class ThresholdServer(ServerMachine):
    """Adds ciphertexts, asks t committee members for partial decryptions, combines them; holds no secret.

    Phases: "collect" (Ciphertext from each client), "decrypt" (a Partial from each responder), then done.
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, spec: RoundSpec, params: ThresholdParams, committee: tuple[int, ...], threshold: int,
                 roster: Roster | None = None) -> None:
        super().__init__(spec)
        self.params, self.committee, self.threshold, self.roster = params, committee, threshold, roster
        self.plan = ThresholdPlan.for_round(params, spec, threshold)
        self.moduli = params.ring.moduli(self.plan.primes)
        self.signed: dict[int, bytes] = {}
        self.received: dict[int, None] = {}
        self.total: np.ndarray | None = None
        self.responders: tuple[int, ...] = ()
        self.partials: dict[int, np.ndarray] = {}

    def start(self) -> list[bytes]:
        self.phase = "collect"
        return [self.send(cid, InputRequest()) for cid in self.spec.clients]

    def receive(self, data: bytes) -> list[bytes]:
        if self.phase == "collect":
            header, msg = self.accept_from_client(data, (Ciphertext,), self.received)
            return self._collect(header.sender, msg)
        header, msg = self.accept_from_client(data, (Partial,) if self.phase == "decrypt" else (), self.partials)
        return self._on_partial(header.sender, msg)

    def on_timeout(self) -> list[bytes]:
        if self.phase == "collect":
            if not self.received:
                raise DropoutError("no client sent its input", round_id=self.spec.round_id)
            return self._ask()
        if self.phase == "decrypt":
            missing = [j for j in self.responders if j not in self.partials]
            raise DropoutError(f"responders {missing} did not answer; a member answers once per round, so this round "
                               "is not decrypted", client=missing[0], round_id=self.spec.round_id, field="partial")
        return []

    def _collect(self, sender: int, msg: Ciphertext) -> list[bytes]:
        c0 = _unpack(self.plan, self.params, msg.c0, client=sender, round_id=self.spec.round_id, field="c0")
        if self.roster is not None:
            digest = hashlib.sha256(msg.c0).digest()
            self.roster.verify(sender, input_statement(self.spec, sender, digest), msg.signature,
                               round_id=self.spec.round_id, field="signature")
            self.signed[sender] = digest + msg.signature
        self.total = c0 if self.total is None else (self.total + c0) % self.moduli
        self.received[sender] = None
        return self._ask() if len(self.received) == len(self.spec.clients) else []

    def _ask(self) -> list[bytes]:
        self.contributors = tuple(sorted(self.received))
        live = [j for j in self.committee if j in self.received]
        if len(live) < self.threshold:
            raise DropoutError(f"{len(live)} committee members contributed to this round, {self.threshold} are "
                               "needed to decrypt", round_id=self.spec.round_id, field="responders")
        self.responders = tuple(live[:self.threshold])
        request = PartialRequest(self.contributors, self.responders,
                                 {c: self.signed[c] for c in self.contributors} if self.roster else {})
        self.phase = "decrypt"
        return [self.send(j, request) for j in self.responders]

    def _on_partial(self, sender: int, msg: Partial) -> list[bytes]:
        spec = self.spec
        if sender not in self.responders:
            raise MessageError("Partial from a client that was not asked", client=sender, round_id=spec.round_id,
                               field="partial")
        part = _unpack(self.plan, self.params, msg.partial, client=sender, round_id=spec.round_id, field="partial")
        if self.roster is not None:
            self.roster.verify(sender, partial_statement(spec, sender, self.contributors, self.responders,
                                                         hashlib.sha256(msg.partial).digest()),
                               msg.signature, round_id=spec.round_id, field="partial")
        self.partials[sender] = part
        if len(self.partials) == len(self.responders):
            self._combine()
        return []

    def _combine(self) -> None:
        """Decode Delta M + noise; release M only when every coefficient's noise and the sum's range check."""
        spec, plan, enc = self.spec, self.plan, self.spec.encoding
        total = self.total
        for part in self.partials.values():
            total = (total + part) % self.moduli
        values = self.params.ring.to_integers(self.params.ring.intt(total)).reshape(-1)[:spec.length]
        delta = 1 << plan.scale_bits
        m = (values + delta // 2) // delta
        noise = values - m * delta
        limit = len(self.contributors) * enc.max_abs_int
        bad = np.flatnonzero((np.abs(noise) > plan.noise_bound) | (np.abs(m) > limit))
        if bad.size:
            raise DecryptionError(f"the partial decryptions of responders {list(self.responders)} do not decrypt the "
                                  f"sum ({bad.size} coefficients outside the noise bound or the range, first "
                                  f"{int(bad[0])}): corrupted or wrong partial; nothing is released",
                                  round_id=spec.round_id, field="partials")
        self.result = enc.dequantize(m.astype(np.int64))
        self.phase = "done"


class ThresholdClient(ClientMachine):
    """Encrypts its input under its own secret; a committee member also answers one PartialRequest.

    Phases: "input" (InputRequest), "decrypt" (committee members: PartialRequest), "done".
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, cid: int, spec: RoundSpec, vector: np.ndarray, params: ThresholdParams, keys: ThresholdKeys,
                 min_contributors: int = 2, identity: Identity | None = None, roster: Roster | None = None) -> None:
        super().__init__(cid, spec, vector)
        if (identity is None) != (roster is None):
            raise ValueError("active mode needs both a signing identity and the roster")
        if keys.session != spec.session or keys.me != cid:
            raise InputError("threshold keys of another session or client", client=cid, round_id=spec.round_id,
                             field="keys")
        self.params, self.keys, self.min_contributors = params, keys, min_contributors
        self.identity, self.roster = identity, roster
        self.plan = ThresholdPlan.for_round(params, spec, keys.threshold)
        self._a: np.ndarray | None = None
        self.phase = "input"

    def __getstate__(self) -> dict:
        """Picklable (a Flower node keeps the machine between exchanges) without the derivable a_{r,b}."""
        return {**self.__dict__, "_a": None}

    def _public_polynomials(self) -> np.ndarray:
        """a_{r,b} of this round (derived once: a responder uses them to encrypt and to decrypt)."""
        if self._a is None:
            self._a = public_polynomials(self.params, self.spec, self.plan)
        return self._a

    def receive(self, data: bytes) -> list[bytes]:
        allowed = {"input": (InputRequest,), "decrypt": (PartialRequest,)}.get(self.phase, ())
        _, msg = self.accept_from_server(data, allowed)
        if isinstance(msg, InputRequest):
            c0 = self._encrypt()
            signature = b"" if self.identity is None else self.identity.sign(
                input_statement(self.spec, self.me, hashlib.sha256(c0).digest()))
            self.phase = "decrypt" if self.keys.shares else "done"
            return [self.send(SERVER, Ciphertext(c0, signature))]
        out = [self.send(SERVER, self._partial(msg))]
        self.phase = "done"
        return out

    def _encrypt(self) -> bytes:
        ring, plan, spec = self.params.ring, self.plan, self.spec
        k, n = plan.primes, ring.n
        m = np.zeros(plan.blocks * n, dtype=np.int64)
        m[:spec.length] = self.quantized
        m = m.reshape(plan.blocks, n)
        p = ring.moduli(k)
        message = (ring.scaled_residues(m, 1 << plan.scale_bits, k)
                   + ring.residues(sample_error((plan.blocks, n)), k)) % p
        s_hat = ring.ntt(ring.residues(self.keys.secret, k))
        c0 = (ring.ntt(message) + p - self._public_polynomials() * s_hat % p) % p
        return pack_residues(c0, plan.width)

    def _partial(self, msg: PartialRequest) -> Partial:
        spec, keys, plan = self.spec, self.keys, self.plan
        contributors, responders = msg.contributors, msg.responders
        if (not contributors or list(contributors) != sorted(set(contributors))
                or not set(contributors) <= set(spec.clients) or not set(contributors) <= set(keys.shares)):
            raise MessageError(f"contributors {contributors} are not a set of this round's clients whose shares this "
                               "member holds", client=self.me, round_id=spec.round_id, field="contributors")
        if len(contributors) < self.min_contributors:
            raise MessageError(f"refusing to decrypt a sum of {len(contributors)} contributors: this client's policy "
                               f"needs at least {self.min_contributors}", client=self.me, round_id=spec.round_id,
                               field="contributors")
        if (list(responders) != sorted(set(responders)) or self.me not in responders
                or not set(responders) <= set(keys.committee) or len(responders) != keys.threshold):
            raise MessageError(f"responders {responders} are not {keys.threshold} committee members including this "
                               "one", client=self.me, round_id=spec.round_id, field="responders")
        if self.roster is not None:
            check_signed_inputs(self.me, spec, self.roster, contributors, msg.inputs, input_statement)
        ring, k = self.params.ring, plan.primes
        p = ring.moduli(k)
        share_sum = np.zeros((k, ring.n), dtype=np.uint64)
        for c in contributors:
            share_sum = (share_sum + keys.shares[c][:k]) % p
        scaled = ring.ntt(share_sum * lagrange_at_zero(ring.primes[:k], responders, self.me) % p)
        smudge = ring.ntt(sample_uniform_residues(ring, k, (plan.blocks,), plan.smudge_bits))
        packed = pack_residues((self._public_polynomials() * scaled % p + smudge) % p, plan.width)
        signature = b"" if self.identity is None else self.identity.sign(
            partial_statement(spec, self.me, contributors, responders, hashlib.sha256(packed).digest()))
        return Partial(packed, signature)
