"""Field value encodings: how one encrypted field travels in a decrypt request.

Two wire forms exist (upstream spec 2.3):

* binary (``_v`` 2, the default): standard padded base64 of ``enc || ct``, split at
  the suite's ``Nenc``;
* legacy hex (``_v`` 1): ``hex(enc) + "#" + hex(ct)``, lower-case hex only.

Upstream picks the parser from the request's ``encoding`` flag, which makes a legacy
vault undecryptable once a PATCH adds binary fields. Here the choice is made per field
from the value's shape (decision D5): ``#`` never occurs in base64, so a value that
contains it is legacy hex and anything else is base64. The request flag is still
validated so that callers sending nonsense hear about it.

Error texts never quote the value: it is ciphertext, and error strings travel back to
the API and into logs.
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from vault.common.suites import Suite

#: Request ``encoding`` values upstream understands; absent means binary.
ENCODING_HEX = "1"
ENCODING_BINARY = "2"
_KNOWN_ENCODINGS = frozenset({ENCODING_HEX, ENCODING_BINARY})
_HEX_SEPARATOR = "#"
_HEX_LOWER = frozenset("0123456789abcdef")
#: How much of an unknown ``encoding`` value an error may quote.
_MAX_QUOTED = 32


class EncodingError(ValueError):
    """A request encoding or a field value could not be parsed; ``str()`` is safe to log."""


class SealedValue(NamedTuple):
    """One field's HPKE output: the encapsulated key and the ciphertext with its tag."""

    enc: bytes
    ct: bytes


def validate_request_encoding(value: str | None) -> None:
    """Accept an absent, ``"1"`` or ``"2"`` request ``encoding``; refuse anything else."""
    if value is None or value in _KNOWN_ENCODINGS:
        return
    shown = value if len(value) <= _MAX_QUOTED else value[:_MAX_QUOTED] + "..."
    raise EncodingError(f"unknown encoding: {shown}")


def split_binary(raw: bytes, suite: Suite) -> SealedValue:
    """Split ``enc || ct`` at the suite's ``Nenc``."""
    need = suite.n_enc
    if len(raw) < need:
        raise EncodingError(f"encrypted data too short: {len(raw)} bytes, need at least {need} for {suite}")
    return SealedValue(raw[:need], raw[need:])


def parse_binary(value: str, suite: Suite) -> SealedValue:
    """Parse the binary wire form: standard padded base64 of ``enc || ct``."""
    try:
        encoded = value.encode("ascii")
    except UnicodeEncodeError:
        raise EncodingError("unable to base64 decode input: non-ASCII character") from None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        # binascii's messages describe the defect (padding, length), never the data.
        raise EncodingError(f"unable to base64 decode input: {exc}") from None
    # b64decode tolerates non-zero padding bits; a strict decoder (as upstream's) refuses
    # them, and refusing keeps one ciphertext to exactly one spelling.
    if base64.b64encode(raw) != encoded:
        raise EncodingError("unable to base64 decode input: non-canonical encoding")
    return split_binary(raw, suite)


def _hex_lower(part: str, what: str) -> bytes:
    for index, char in enumerate(part):
        if char not in _HEX_LOWER:
            raise EncodingError(f"unable to hex decode {what}: invalid symbol at {index}")
    if len(part) % 2:
        raise EncodingError(f"unable to hex decode {what}: invalid length {len(part)}")
    return bytes.fromhex(part)


def split_hex(value: str, suite: Suite) -> SealedValue:
    """Parse the legacy form ``hex(enc) + "#" + hex(ct)`` (lower-case hex only)."""
    enc_hex, sep, ct_hex = value.partition(_HEX_SEPARATOR)
    if not sep:
        raise EncodingError(f"unable to split value on '#': no separator in {len(value)}-character value")
    enc = _hex_lower(enc_hex, "encapsulated key")
    ct = _hex_lower(ct_hex, "ciphertext")
    if len(enc) != suite.n_enc:
        raise EncodingError(f"encapsulated key is {len(enc)} bytes, need {suite.n_enc} for {suite}")
    return SealedValue(enc, ct)


def parse_field_value(value: str, suite: Suite) -> SealedValue:
    """Parse one field value, choosing the form from its shape (decision D5)."""
    if _HEX_SEPARATOR in value:
        return split_hex(value, suite)
    return parse_binary(value, suite)
