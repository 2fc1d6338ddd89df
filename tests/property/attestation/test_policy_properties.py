"""Key policy evaluation: operator algebra, deny precedence, and the vault policy's PCR pinning."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from emulator.aws.kms.policy import RequestContext, conditions_hold, evaluate
from vault.infra.key_policy import EnclaveMeasurements, KeyPolicyParams, build_key_policy, pcr3_for_role_arn

from .conftest import ACCOUNT, API_ROLE, INSTANCE_ROLE

KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000"
values = st.text(alphabet="abcAB*?-", max_size=6)
positive = ["StringEquals", "StringEqualsIgnoreCase", "StringLike"]


def request(keys: dict[str, list[str]], action: str = "kms:Decrypt") -> RequestContext:
    return RequestContext(principal_arn=INSTANCE_ROLE, action=action, resource=KEY, keys=keys)


@given(
    operator=st.sampled_from(positive), value=values, policy_values=st.lists(values, min_size=1, max_size=3)
)
def test_negated_operators_are_complements_when_the_key_is_present(
    operator: str, value: str, policy_values: list[str]
) -> None:
    negated = operator.replace("String", "StringNot", 1)
    keys = {"k": [value]}
    assert conditions_hold({negated: {"k": policy_values}}, request(keys)) != conditions_hold(
        {operator: {"k": policy_values}}, request(keys)
    )
    # IfExists changes nothing when the key is there ...
    assert conditions_hold({operator + "IfExists": {"k": policy_values}}, request(keys)) == conditions_hold(
        {operator: {"k": policy_values}}, request(keys)
    )


@given(operator=st.sampled_from(positive), policy_values=st.lists(values, min_size=1, max_size=3))
def test_absent_keys(operator: str, policy_values: list[str]) -> None:
    # ... and makes an absent key pass, as negated operators do; plain operators fail.
    negated = operator.replace("String", "StringNot", 1)
    assert not conditions_hold({operator: {"k": policy_values}}, request({}))
    assert conditions_hold({operator + "IfExists": {"k": policy_values}}, request({}))
    assert conditions_hold({negated: {"k": policy_values}}, request({}))


statement_parts = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Principal": st.sampled_from(["*", {"AWS": INSTANCE_ROLE}, {"AWS": API_ROLE}]),
        "Action": st.sampled_from(["kms:*", "kms:Decrypt", "kms:Encrypt", ["kms:Describe*", "kms:Decrypt"]]),
        "Resource": st.sampled_from(["*", KEY, KEY + "-other"]),
    }
)


def _applies(statement: dict[str, Any]) -> bool:
    principal = statement["Principal"]
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    return (
        (principal == "*" or principal == {"AWS": INSTANCE_ROLE})
        and any(a in ("kms:*", "kms:Decrypt") for a in actions)
        and statement["Resource"] in ("*", KEY)
    )


@given(statements=st.lists(statement_parts, min_size=1, max_size=6))
def test_explicit_deny_wins_and_allow_is_needed(statements: list[dict[str, Any]]) -> None:
    applicable = [s["Effect"] for s in statements if _applies(s)]
    expected = "Allow" in applicable and "Deny" not in applicable
    assert evaluate({"Statement": statements}, request({})).allowed == expected


pcrs = st.binary(min_size=48, max_size=48).map(bytes.hex)
# Never all zeros: the key policy refuses to pin a debug-mode enclave's PCRs.
pinned = st.binary(min_size=48, max_size=48).filter(any).map(bytes.hex)


@given(
    policy=st.builds(EnclaveMeasurements, pcr0=pinned, pcr1=pinned, pcr2=pinned, pcr8=st.none() | pcrs),
    attested=st.fixed_dictionaries({}, optional={f"PCR{i}": pcrs for i in (0, 1, 2, 3, 8)}),
    use_policy_values=st.sets(st.sampled_from([0, 1, 2, 3, 8])),
    upper=st.booleans(),
)
def test_vault_policy_decrypt_needs_every_pinned_pcr(
    policy: EnclaveMeasurements, attested: dict[str, str], use_policy_values: set[int], upper: bool
) -> None:
    pcr3 = pcr3_for_role_arn(INSTANCE_ROLE)
    pinned = {0: policy.pcr0, 1: policy.pcr1, 2: policy.pcr2, 3: pcr3, 8: policy.pcr8}
    document = {int(k[3:]): v for k, v in attested.items()}
    document.update({i: pinned[i] for i in use_policy_values if pinned[i] is not None})
    keys = {f"kms:RecipientAttestation:PCR{i}": [v.upper() if upper else v] for i, v in document.items()}
    if 0 in document:
        keys["kms:RecipientAttestation:ImageSha384"] = keys["kms:RecipientAttestation:PCR0"]
    keys.update(
        {
            "aws:PrincipalAccount": [ACCOUNT],
            "kms:CallerAccount": [ACCOUNT],
            "kms:EncryptionContext:vault_id": ["v"],
        }
    )
    key_policy = build_key_policy(
        KeyPolicyParams(
            account_id=ACCOUNT, instance_role_arn=INSTANCE_ROLE, api_role_arn=API_ROLE, measurements=policy
        )
    )
    expected = all(value is None or document.get(i) == value for i, value in pinned.items())
    assert evaluate(key_policy, request(keys)).allowed == expected


images = st.builds(EnclaveMeasurements, pcr0=pinned, pcr1=pinned, pcr2=pinned, pcr8=st.none() | pcrs)


@given(
    allowed=st.lists(images, min_size=1, max_size=3, unique=True),
    # For each PCR, the image it is taken from: a mixture unless all choices agree.
    choices=st.fixed_dictionaries({name: st.integers(0, 2) for name in ("pcr0", "pcr1", "pcr2", "pcr8")}),
)
def test_several_images_decrypt_only_as_whole_images(
    allowed: list[EnclaveMeasurements], choices: dict[str, int]
) -> None:
    pcr3 = pcr3_for_role_arn(INSTANCE_ROLE)
    document = {name: getattr(allowed[index % len(allowed)], name) for name, index in choices.items()}
    keys = {
        "kms:RecipientAttestation:ImageSha384": [document["pcr0"]],
        "kms:RecipientAttestation:PCR1": [document["pcr1"]],
        "kms:RecipientAttestation:PCR2": [document["pcr2"]],
        "kms:RecipientAttestation:PCR3": [pcr3],
        "aws:PrincipalAccount": [ACCOUNT],
        "kms:CallerAccount": [ACCOUNT],
        "kms:EncryptionContext:vault_id": ["v"],
    }
    if document["pcr8"] is not None:
        keys["kms:RecipientAttestation:PCR8"] = [document["pcr8"]]
    key_policy = build_key_policy(
        KeyPolicyParams(
            account_id=ACCOUNT,
            instance_role_arn=INSTANCE_ROLE,
            api_role_arn=API_ROLE,
            measurements=allowed[0],
            additional_measurements=tuple(allowed[1:]),
        )
    )
    # An image matches when every PCR it pins is the document's (an unpinned PCR8 matches anything).
    expected = any(
        all(getattr(image, name) == document[name] for name in ("pcr0", "pcr1", "pcr2"))
        and image.pcr8 in (None, document["pcr8"])
        for image in allowed
    )
    assert evaluate(key_policy, request(keys)).allowed == expected
