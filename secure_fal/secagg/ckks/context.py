"""CKKS keys and parameters as held by one party, over TenSEAL's SEAL bindings (``tenseal.sealapi``).

A private context (held by clients) can encrypt and decrypt; a public one (held by the server) has no key
at all and can only load and add ciphertexts. The API mirrors TenSEAL's ``Context``: ``is_private()``, and
``secret_key()`` raises on a public context.

Why the SEAL bindings rather than TenSEAL's ``Context``/``CKKSVector``: TenSEAL cannot make a context with a
single coefficient prime (it always asks SEAL for key switching: "keyswitching is not supported by the
context"), and ``CKKSVector.serialize`` writes symmetric ciphertexts in full instead of as a seed, i.e. twice
the bytes. Both are measured in protocols/ckks.md.

The bindings serialize to file paths only, so bytes go through an anonymous in-memory file (``memfd_create``,
opened by SEAL as /proc/self/fd/N): no key, ciphertext or plaintext is ever written to a named file, on disk or in
/dev/shm, and nothing outlives the process, even a killed one (Linux only, as the rest of the package).
"""

from __future__ import annotations

import os
import struct

import numpy as np
import tenseal.sealapi as sa

from .params import CKKSParams

_MAGIC = b"SFCK"
_VERSION = 1
_HAS_SECRET, _HAS_PUBLIC, _SYMMETRIC = 1, 2, 4  # flag bits
_CTX_HEADER = struct.Struct(">4sBBIbB")   # magic, version, flags, N, scale_bits (-1: auto), n primes, ...
_SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, version major, minor, compression, reserved, size
_SEAL_MAGIC = 0xA15E
_U32 = struct.Struct(">I")



def _memory_file() -> tuple[int, str]:
    """An anonymous in-memory file (``memfd_create``): (fd, a path SEAL can open). It has no name in any file
    system and vanishes with its last descriptor, so a killed process leaves no key material behind."""
    fd = os.memfd_create("secure_fal_seal", os.MFD_CLOEXEC)
    return fd, f"/proc/self/fd/{fd}"


def _save(obj) -> bytes:
    """Bytes of a SEAL object (ciphertext, key, serializable ciphertext) in SEAL's format (zstd-compressed)."""
    fd, path = _memory_file()
    try:
        obj.save(path)
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def _load(obj, context: sa.SEALContext, data: bytes):
    """Load SEAL-format bytes into ``obj`` (validated by SEAL against ``context``); returns obj."""
    fd, path = _memory_file()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        obj.load(context, path)
        return obj
    finally:
        os.close(fd)


def check_seal_blob(blob: bytes, max_bytes: int) -> None:
    """Cheap checks before SEAL parses ``blob``: size cap, SEAL magic and header, declared size == actual.

    Raises:
        ValueError: naming what is wrong.
    """
    if len(blob) < _SEAL_HEADER.size:
        raise ValueError(f"{len(blob)} bytes, shorter than a SEAL header ({_SEAL_HEADER.size})")
    if len(blob) > max_bytes:
        raise ValueError(f"{len(blob)} bytes, more than the {max_bytes} a ciphertext of these parameters takes")
    magic, header_size, _, _, compression, _, size = _SEAL_HEADER.unpack_from(blob)
    if magic != _SEAL_MAGIC or header_size != _SEAL_HEADER.size:
        raise ValueError("not a SEAL object (bad magic or header size)")
    if compression not in (0, 1, 2):
        raise ValueError(f"unknown SEAL compression mode {compression}")
    if size != len(blob):
        raise ValueError(f"SEAL header declares {size} bytes, got {len(blob)} (truncated or padded)")


class CKKSContext:
    """CKKS parameters plus the keys one party holds.

    Build with ``generate`` (the key dealer) or ``from_bytes`` (everyone else). Attributes: ``params``.
    """

    def __init__(self, params: CKKSParams, secret_key: bytes | None = None, public_key: bytes | None = None) -> None:
        self.params = params
        parms = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(params.poly_modulus_degree)
        parms.set_coeff_modulus(sa.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_mod_bit_sizes)))
        self._seal = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)
        if not self._seal.parameters_set():
            raise ValueError(f"SEAL rejects {params}: {self._seal.parameters_error_message()}")
        self._encoder = sa.CKKSEncoder(self._seal)
        self._evaluator = sa.Evaluator(self._seal)
        self._first_parms_id = self._seal.first_parms_id()
        data_primes = len(self._seal.first_context_data().parms().coeff_modulus())
        raw = 2 * params.poly_modulus_degree * data_primes * 8
        # cap on one serialized ciphertext: a full (unseeded, uncompressed) one plus SEAL header and zstd slack
        self.max_ciphertext_bytes = raw + raw // 256 + 4096
        self._secret_key_bytes = secret_key
        self._public_key_bytes = public_key
        self._sk = _load(sa.SecretKey(), self._seal, secret_key) if secret_key is not None else None
        pk = _load(sa.PublicKey(), self._seal, public_key) if public_key is not None else None
        self._encryptor = self._decryptor = None
        if self._sk is not None:
            self._decryptor = sa.Decryptor(self._seal, self._sk)
            if params.symmetric:
                self._encryptor = sa.Encryptor(self._seal, self._sk)
            elif pk is not None:
                self._encryptor = sa.Encryptor(self._seal, pk)

    # -- keys -----------------------------------------------------------------------------------------

    @classmethod
    def generate(cls, params: CKKSParams) -> CKKSContext:
        """Fresh keys (SEAL's CSPRNG, seeded from the OS); a public key only for public-key encryption."""
        ctx = cls(params)
        keygen = sa.KeyGenerator(ctx._seal)
        public_key = None
        if not params.symmetric:
            pk = sa.PublicKey()
            keygen.create_public_key(pk)
            public_key = _save(pk)
        return cls(params, _save(keygen.secret_key()), public_key)

    def is_private(self) -> bool:
        """True when this context holds the secret key (clients); False for the server's."""
        return self._sk is not None

    def secret_key(self) -> sa.SecretKey:
        """The secret key; raises ValueError on a public context."""
        if self._sk is None:
            raise ValueError("this CKKS context is public: it holds no secret key")
        return self._sk

    def make_public(self) -> CKKSContext:
        """A copy with the parameters only (no key): what the server gets."""
        return CKKSContext(self.params)

    def serialize(self) -> bytes:
        """Bytes of this context: parameters, plus the secret (and public) key when held."""
        p = self.params
        flags = ((_HAS_SECRET if self._secret_key_bytes is not None else 0)
                 | (_HAS_PUBLIC if self._public_key_bytes is not None else 0) | (_SYMMETRIC if p.symmetric else 0))
        out = bytearray(_CTX_HEADER.pack(_MAGIC, _VERSION, flags, p.poly_modulus_degree,
                                         -1 if p.scale_bits is None else p.scale_bits, len(p.coeff_mod_bit_sizes)))
        out += bytes(p.coeff_mod_bit_sizes)
        for blob in (self._secret_key_bytes, self._public_key_bytes):
            if blob is not None:
                out += _U32.pack(len(blob)) + blob
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> CKKSContext:
        """Inverse of ``serialize``; raises ValueError on malformed bytes."""
        try:
            magic, version, flags, n, scale_bits, n_primes = _CTX_HEADER.unpack_from(data)
        except struct.error as exc:
            raise ValueError(f"truncated CKKS context: {exc}") from None
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"not a CKKS context of version {_VERSION} (magic {magic!r}, version {version})")
        pos = _CTX_HEADER.size + n_primes
        if len(data) < pos:
            raise ValueError("truncated CKKS context")
        params = CKKSParams(n, tuple(data[_CTX_HEADER.size:pos]), None if scale_bits < 0 else scale_bits,
                            symmetric=bool(flags & _SYMMETRIC))
        blobs = []
        for bit in (_HAS_SECRET, _HAS_PUBLIC):
            if not flags & bit:
                blobs.append(None)
                continue
            if len(data) < pos + 4:
                raise ValueError("truncated CKKS context")
            size = _U32.unpack_from(data, pos)[0]
            blob = data[pos + 4:pos + 4 + size]
            if len(blob) != size:
                raise ValueError("truncated CKKS context")
            blobs.append(blob)
            pos += 4 + size
        if pos != len(data):
            raise ValueError(f"{len(data) - pos} trailing bytes after the CKKS context")
        try:
            return cls(params, *blobs)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(f"invalid key in CKKS context: {exc}") from None

    # -- ciphertexts ----------------------------------------------------------------------------------

    def encrypt(self, values: np.ndarray, scale: int) -> bytes:
        """Encode up to N float values at ``scale``, two per complex slot (values i and N/2 + i are slot i's real
        and imaginary part; missing values are 0), and encrypt; returns the serialized ciphertext (seeded, i.e.
        one polynomial plus a seed, when symmetric)."""
        if self._encryptor is None:
            raise ValueError("this CKKS context cannot encrypt: it holds no key")
        if len(values) > self.params.capacity:
            raise ValueError(f"{len(values)} values do not fit in one ciphertext of {self.params.capacity}")
        padded = np.zeros(self.params.capacity, dtype=np.float64)
        padded[:len(values)] = values
        half = self.params.slots
        plain = sa.Plaintext()
        self._encoder.encode((padded[:half] + 1j * padded[half:]).tolist(), float(scale), plain)
        if self.params.symmetric:
            return _save(self._encryptor.encrypt_symmetric(plain))
        cipher = sa.Ciphertext()
        self._encryptor.encrypt(plain, cipher)
        return _save(cipher)

    def load_ciphertext(self, blob: bytes, scale: int) -> sa.Ciphertext:
        """Parse and check one serialized ciphertext of these parameters at ``scale``.

        Raises:
            ValueError: wrong size, not SEAL data, rejected by SEAL (garbage, other parameters), or not a fresh
                two-polynomial ciphertext at this scale.
        """
        check_seal_blob(blob, self.max_ciphertext_bytes)
        try:
            cipher = _load(sa.Ciphertext(), self._seal, blob)
        except Exception as exc:  # SEAL raises RuntimeError, ValueError, IndexError... on garbage
            raise ValueError(f"SEAL rejects the ciphertext: {type(exc).__name__}: {exc}") from None
        if cipher.size() != 2 or not cipher.is_ntt_form():
            raise ValueError(f"expected a 2-polynomial NTT-form ciphertext, got size {cipher.size()}")
        if cipher.parms_id() != self._first_parms_id:
            raise ValueError("ciphertext is not at the top level of these parameters")
        if cipher.scale != float(scale):
            raise ValueError(f"ciphertext scale 2^{np.log2(cipher.scale):.2f}, expected 2^{np.log2(scale):.0f}")
        return cipher

    def add_inplace(self, total: sa.Ciphertext, other: sa.Ciphertext) -> None:
        """total += other (homomorphic addition; needs no key)."""
        self._evaluator.add_inplace(total, other)

    @staticmethod
    def save_ciphertext(cipher: sa.Ciphertext) -> bytes:
        """Serialize a (non-seeded) ciphertext, e.g. an aggregate."""
        return _save(cipher)

    def decrypt(self, cipher: sa.Ciphertext) -> np.ndarray:
        """Decrypt and decode: float64 array of the N values (real parts of the N/2 slots, then their imaginary
        parts), before dividing out anything."""
        if self._decryptor is None:
            raise ValueError("this CKKS context is public: it holds no secret key")
        plain = sa.Plaintext()
        self._decryptor.decrypt(cipher, plain)
        slots = np.asarray(self._encoder.decode_complex(plain), dtype=np.complex128)
        return np.concatenate([slots.real, slots.imag])
