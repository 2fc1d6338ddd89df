"""Vault ids: PKSUID layout of spec 1.8, reproduced against upstream's example id."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from vault.api.ids import BASE62_ALPHABET, KSUID_EPOCH, VAULT_ID_PATTERN, base62, new_vault_id

UPSTREAM_ID = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"


def _decode(vault_id: str) -> bytes:
    number = 0
    for char in vault_id.removeprefix("v_"):
        number = number * 62 + BASE62_ALPHABET.index(char)
    return number.to_bytes(20, "big")


def test_upstream_example_is_reproduced_from_its_parts() -> None:
    raw = _decode(UPSTREAM_ID)
    seconds = int.from_bytes(raw[:4], "big") + KSUID_EPOCH
    assert datetime.fromtimestamp(seconds, UTC) == datetime(2024, 6, 5, 1, 35, 1, tzinfo=UTC)
    assert new_vault_id(now=seconds, random_bytes=raw[4:]) == UPSTREAM_ID


def test_fresh_ids_match_the_documented_pattern_and_differ() -> None:
    before = int(time.time()) - KSUID_EPOCH
    ids = {new_vault_id() for _ in range(200)}
    after = int(time.time()) - KSUID_EPOCH
    assert len(ids) == 200
    for vault_id in ids:
        assert re.match(VAULT_ID_PATTERN, vault_id)
        assert before <= int.from_bytes(_decode(vault_id)[:4], "big") <= after


def test_timestamp_prefix_is_the_creation_second() -> None:
    now = 1_767_225_600
    raw = _decode(new_vault_id(now=now + 0.9))
    assert int.from_bytes(raw[:4], "big") == now - KSUID_EPOCH


def test_base62_is_big_endian_without_padding() -> None:
    assert base62(b"\x00") == "0"
    assert base62(b"\x00\x3d") == "z"
    assert base62(b"\x00\x3e") == "10"
    # Leading zero bytes shorten the id: upstream does not left-pad.
    assert len(new_vault_id(now=KSUID_EPOCH, random_bytes=bytes(16))) == len("v_0")
