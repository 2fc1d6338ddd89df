"""Strategies for enclave requests: well-formed, and every way of getting them wrong."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

#: Names as the API sends them: already stripped (it normalises before sealing).
field_names = st.text(min_size=1, max_size=24).filter(lambda name: name == name.strip())
field_values = st.text(max_size=80)

REQUEST_KEYS = (
    "vault_id",
    "region",
    "fields",
    "suite_id",
    "encrypted_private_key",
    "expressions",
    "encoding",
)
CREDENTIAL_KEYS = ("AccessKeyId", "SecretAccessKey", "Token")


@st.composite
def mutated_requests(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """``valid`` with one part deleted or replaced by arbitrary JSON."""
    wire = copy.deepcopy(valid)
    where = draw(st.sampled_from(["top", "request", "credential", "field"]))
    if where == "top":
        key = draw(st.sampled_from(["credential", "request"]))
        container: dict[str, Any] = wire
    elif where == "request":
        key = draw(st.sampled_from(REQUEST_KEYS))
        container = wire["request"]
    elif where == "credential":
        key = draw(st.sampled_from(CREDENTIAL_KEYS))
        container = wire["credential"]
    else:
        container = wire["request"]["fields"]
        key = draw(st.sampled_from(sorted(container))) if container else "x"
    if draw(st.booleans()):
        container.pop(key, None)
    else:
        container[key] = draw(json_values)
    return json.dumps(wire).encode()


def malformed_payloads(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Random bytes, random JSON documents, and mutations of a valid request."""
    return st.one_of(
        st.binary(max_size=512),
        json_values.map(lambda value: json.dumps(value).encode()),
        mutated_requests(valid),
    )
