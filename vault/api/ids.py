"""Vault ids: PKSUID-style, ``v_`` + base62 of a 4-byte timestamp and 16 random bytes (spec 1.8).

The layout is that of the upstream ``pksuid`` library so ids from either stay alike and
K-sortable by creation second: ``uint32_be(unix_seconds - 1400000000) || urandom(16)``,
read as one big-endian integer and written in base62 (digits, upper case, lower case)
without left padding.
"""

from __future__ import annotations

import os
import time

VAULT_ID_PREFIX = "v"
#: KSUID epoch: 2014-05-13T16:53:20Z.
KSUID_EPOCH = 1_400_000_000
BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PAYLOAD_BYTES = 16
#: The longest base62 spelling of 20 bytes is 27 characters.
VAULT_ID_PATTERN = r"^v_[0-9A-Za-z]{1,27}$"


def base62(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    if number == 0:
        return BASE62_ALPHABET[0]
    digits: list[str] = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62_ALPHABET[rest])
    return "".join(reversed(digits))


def new_vault_id(now: float | None = None, random_bytes: bytes | None = None) -> str:
    """A fresh vault id; ``now`` and ``random_bytes`` exist for reproducible tests."""
    seconds = int(time.time() if now is None else now) - KSUID_EPOCH
    payload = os.urandom(_PAYLOAD_BYTES) if random_bytes is None else random_bytes
    if len(payload) != _PAYLOAD_BYTES:
        raise ValueError(f"a vault id needs {_PAYLOAD_BYTES} random bytes")
    return f"{VAULT_ID_PREFIX}_{base62(seconds.to_bytes(4, 'big') + payload)}"
