"""The machines of a CKKS round (flow in ``protocol.py``, spec protocols/ckks.md): the server adds ciphertexts
and never decrypts; each client encrypts its input and, as decryptor, decrypts the aggregate once. Active mode (a
``Roster``): every input is signed for its round, and the decryptor accepts only a request that carries the
signed inputs of every listed contributor of this round (protocols/ckks.md §Threat model)."""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import DecryptionError, DropoutError, InputError, MessageError
from ..identity import SIGNATURE_BYTES, Identity, Roster, statement
from ..machine import ClientMachine, RoundSpec, ServerMachine
from ..messages import SERVER
from .context import CKKSContext
from .messages import KINDS, PROTOCOL_ID, DecryptRequest, DecryptedSum, EncryptedInput, Request
from .params import RoundPlan


def input_statement(spec: RoundSpec, cid: int, digest: bytes) -> bytes:
    """What a client signs in active mode: its input's SHA-256 ``digest`` for this session and round."""
    return statement(b"ckks/input", spec.session, spec.round_id, cid, digest)


def chunks_digest(chunks: dict[int, bytes]) -> bytes:
    """SHA-256 over the chunks in index order, each length-prefixed (32 bytes)."""
    h = hashlib.sha256()
    for i in sorted(chunks):
        h.update(len(chunks[i]).to_bytes(4, "big") + chunks[i])
    return h.digest()


def check_signed_inputs(me: int, spec: RoundSpec, roster: Roster, contributors: tuple[int, ...],
                        inputs: dict[int, bytes], statement_of) -> None:
    """Active mode, at a decryptor: every listed contributor signed an input of this very round: ``inputs`` maps each
    to digest (32 bytes) || signature of ``statement_of(spec, contributor, digest)``. MessageError naming the
    contributor (or ``me`` for a list mismatch), field 'inputs'; a list of another round, or of clients that sent
    nothing, is refused."""
    if sorted(inputs) != list(contributors):
        raise MessageError("the signed inputs do not match the contributors", client=me, round_id=spec.round_id,
                           field="inputs")
    for c, entry in inputs.items():
        if len(entry) != 32 + SIGNATURE_BYTES:
            raise MessageError("signed input of the wrong size", client=c, round_id=spec.round_id, field="inputs")
        roster.verify(c, statement_of(spec, c, entry[:32]), entry[32:], round_id=spec.round_id, field="inputs")


def _load_chunks(context: CKKSContext, plan: RoundPlan, chunks: dict[int, bytes], *, client: int | None,
                 round_id: int) -> list:
    """Check and parse every chunk before anything is used: all or nothing."""
    if sorted(chunks) != list(range(plan.chunks)):
        raise MessageError(f"expected chunks 0..{plan.chunks - 1}, got {len(chunks)} with indices "
                           f"{sorted(chunks)[:5]}...", client=client, round_id=round_id, field="chunks")
    out = []
    for i in range(plan.chunks):
        try:
            out.append(context.load_ciphertext(chunks[i], plan.scale))
        except ValueError as exc:
            raise MessageError(str(exc), client=client, round_id=round_id, field=f"chunks[{i}]") from None
    return out


class CKKSServer(ServerMachine):
    """Holds only the public context: adds ciphertexts, never decrypts.

    Phases: "collect" (EncryptedInput from each client, added as it arrives), "decrypt" (waiting for the
    DecryptedSum of the current decryptor), then done.
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, spec: RoundSpec, context: CKKSContext, preferred_decryptor: int | None,
                 roster: Roster | None = None) -> None:
        if context.is_private():
            raise ValueError("the CKKS server must not hold the secret key")
        super().__init__(spec)
        self.roster = roster
        self.signed: dict[int, bytes] = {}   # active mode: contributor -> digest || signature
        self.context = context
        self.plan = RoundPlan.for_round(context.params, spec)
        self.preferred_decryptor = preferred_decryptor
        self.received: dict[int, None] = {}
        self.sums: list | None = None
        self.asked: list[int] = []
        self._request: DecryptRequest | None = None

    def start(self) -> list[bytes]:
        self.phase = "collect"
        return [self.send(cid, Request()) for cid in self.spec.clients]

    def receive(self, data: bytes) -> list[bytes]:
        if self.phase == "collect":
            return self._collect(data)
        header, msg = self.accept_from_client(data, (DecryptedSum,) if self.phase == "decrypt" else (), {})
        return self._finish(header.sender, msg)

    def on_timeout(self) -> list[bytes]:
        if self.phase == "collect":
            if not self.received:
                raise DropoutError("no client sent its input", round_id=self.spec.round_id)
            return self._ask_next()
        if self.phase == "decrypt":
            return self._ask_next()
        return []

    def _collect(self, data: bytes) -> list[bytes]:
        header, msg = self.accept_from_client(data, (EncryptedInput,), self.received)
        ciphers = _load_chunks(self.context, self.plan, msg.chunks, client=header.sender,
                               round_id=self.spec.round_id)
        if self.roster is not None:
            digest = chunks_digest(msg.chunks)
            self.roster.verify(header.sender, input_statement(self.spec, header.sender, digest), msg.signature,
                               round_id=self.spec.round_id, field="signature")
            self.signed[header.sender] = digest + msg.signature
        if self.sums is None:
            self.sums = ciphers
        else:
            for total, c in zip(self.sums, ciphers):
                self.context.add_inplace(total, c)
        self.received[header.sender] = None
        if len(self.received) == len(self.spec.clients):
            return self._ask_next()
        return []

    def _ask_next(self) -> list[bytes]:
        """Send the aggregate to the next contributing key holder not asked yet."""
        if self._request is None:
            self.contributors = tuple(sorted(self.received))
            self._request = DecryptRequest(self.contributors, {i: self.context.save_ciphertext(c)
                                                               for i, c in enumerate(self.sums)},
                                           {c: self.signed[c] for c in self.contributors} if self.roster else {})
            self.sums = None
        order = sorted(self.contributors, key=lambda c: (c != self.preferred_decryptor, c))
        remaining = [c for c in order if c not in self.asked]
        if not remaining:
            raise DropoutError(f"no contributing key holder answered the decryption request (asked {self.asked})",
                               round_id=self.spec.round_id)
        self.phase = "decrypt"
        self.asked.append(remaining[0])
        return [self.send(remaining[0], self._request)]

    def _finish(self, sender: int, msg: DecryptedSum) -> list[bytes]:
        if sender not in self.asked:
            raise MessageError("DecryptedSum from a client that was not asked to decrypt", client=sender,
                               round_id=self.spec.round_id, field="values")
        enc = self.spec.encoding
        try:
            total = enc.from_ring(enc.unpack(msg.values, self.spec.length))
        except ValueError as exc:
            raise MessageError(str(exc), client=sender, round_id=self.spec.round_id, field="values") from None
        limit = len(self.contributors) * enc.max_abs_int
        if np.abs(total).max() > limit:
            raise MessageError(f"decrypted sum exceeds {len(self.contributors)} x the input bound", client=sender,
                               round_id=self.spec.round_id, field="values")
        self.result = enc.dequantize(total)
        self.phase = "done"
        return []


class CKKSClient(ClientMachine):
    """Holds the secret context: encrypts its input, and decrypts the aggregate when asked.

    Phases: "input" (waiting for Request), "decrypt" (input sent; may be asked to decrypt), "done". As decryptor
    it decrypts once, in its own round (the machine exists once per (session, round): the registry), and only a
    request naming at least ``min_contributors`` contributors of the round (protocols/ckks.md §Threat model).
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, cid: int, spec: RoundSpec, vector: np.ndarray, context: CKKSContext,
                 min_contributors: int = 2, identity: Identity | None = None, roster: Roster | None = None) -> None:
        super().__init__(cid, spec, vector)
        if (identity is None) != (roster is None):
            raise ValueError("active mode needs both a signing identity and the roster")
        self.min_contributors = min_contributors
        self.identity, self.roster = identity, roster
        if not context.is_private():
            raise InputError("client context holds no secret key", client=cid, round_id=spec.round_id,
                             field="context")
        self.context = context
        self.plan = RoundPlan.for_round(context.params, spec)
        self.phase = "input"

    def receive(self, data: bytes) -> list[bytes]:
        allowed = {"input": (Request,), "decrypt": (DecryptRequest,)}.get(self.phase, ())
        _, msg = self.accept_from_server(data, allowed)
        if isinstance(msg, Request):
            chunks = self._encrypt()
            signature = b"" if self.identity is None else self.identity.sign(
                input_statement(self.spec, self.me, chunks_digest(chunks)))
            out = [self.send(SERVER, EncryptedInput(chunks, signature))]
            self.phase = "decrypt"
            return out
        out = [self.send(SERVER, DecryptedSum(self._decrypt(msg)))]
        self.phase = "done"
        return out

    def _encrypt(self) -> dict[int, bytes]:
        y = self.quantized / float(self.plan.divisor)
        size = self.context.params.capacity
        return {i: self.context.encrypt(y[i * size:(i + 1) * size], self.plan.scale)
                for i in range(self.plan.chunks)}

    def _decrypt(self, msg: DecryptRequest) -> bytes:
        spec, plan, enc = self.spec, self.plan, self.spec.encoding
        contributors = msg.contributors
        if not contributors or list(contributors) != sorted(set(contributors)) or not set(contributors) <= set(
                spec.clients):
            raise MessageError(f"contributors {contributors} are not a set of this round's clients",
                               client=self.me, round_id=spec.round_id, field="contributors")
        if len(contributors) < self.min_contributors:
            raise MessageError(f"refusing to decrypt a sum of {len(contributors)} contributors: this client's policy "
                               f"needs at least {self.min_contributors}", client=self.me, round_id=spec.round_id,
                               field="contributors")
        if self.roster is not None:
            self._check_signed_inputs(msg)
        ciphers = _load_chunks(self.context, plan, msg.chunks, client=self.me, round_id=spec.round_id)
        size = self.context.params.capacity
        total = np.concatenate([self.context.decrypt(c) for c in ciphers])[:spec.length] * plan.divisor
        n = len(contributors)
        limit = n * enc.max_abs_int + plan.integer_error(n) + 1
        bad = np.flatnonzero(~(np.abs(total) <= limit))
        if bad.size:
            raise DecryptionError(f"decryptor client {self.me}: value {bad[0]} decrypts beyond what any sum of {n} "
                                  "inputs can reach (wrong key or corrupted ciphertext)", client=self.me,
                                  round_id=spec.round_id, field=f"chunks[{bad[0] // size}]")
        rounded = np.clip(np.rint(total), -n * enc.max_abs_int, n * enc.max_abs_int).astype(np.int64)
        return enc.pack(enc.to_ring(rounded))

    def _check_signed_inputs(self, msg: DecryptRequest) -> None:
        check_signed_inputs(self.me, self.spec, self.roster, msg.contributors, msg.inputs, input_statement)

    def __getstate__(self) -> dict:
        """Picklable (e.g. kept in a Flower node's state between messages): the context as its bytes."""
        state = dict(self.__dict__)
        state["context"] = self.context.serialize()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "context": CKKSContext.from_bytes(state["context"])})
