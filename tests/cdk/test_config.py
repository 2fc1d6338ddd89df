"""Context validation, and the rule that the key stack is never built without measurements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from vault_cdk.application import build
from vault_cdk.config import UNSAFE_FLAG, ConfigError, load_config

from vault.infra.key_policy import MeasurementsError

from .support import MEASUREMENTS, app_context, next_image_measurements


def context(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return app_context(tmp_path, **overrides)


def test_app_refuses_to_build_without_measurements(tmp_path: Path) -> None:
    app = App(context=context(tmp_path, **{"vault:measurements": ""}), outdir=str(tmp_path / "out"))
    with pytest.raises(MeasurementsError, match=UNSAFE_FLAG):
        build(app, nag=False)
    assert app.node.children == [], "no stack may exist when the key policy cannot be attested"


def test_unsafe_mode_is_explicit_and_exclusive(tmp_path: Path) -> None:
    config = load_config(context(tmp_path, **{"vault:measurements": "", UNSAFE_FLAG: "true"}))
    assert config.unsafe_allow_unattested_decrypt and config.measurements is None
    with pytest.raises(ConfigError, match="exclude each other"):
        load_config(context(tmp_path / "both", **{UNSAFE_FLAG: True}))
    with pytest.raises(ConfigError, match="true or false"):
        load_config(context(tmp_path / "typo", **{"vault:measurements": "", UNSAFE_FLAG: "yes"}))


def test_measurements_are_read_and_checked(tmp_path: Path) -> None:
    config = load_config(context(tmp_path))
    assert config.measurements is not None
    assert config.measurements.pcr0 == json.loads(MEASUREMENTS.read_text())["Measurements"]["PCR0"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"Measurements": {"PCR0": "00", "PCR1": "11", "PCR2": "22"}}))
    with pytest.raises(MeasurementsError, match="96 hex"):
        load_config(context(tmp_path / "b", **{"vault:measurements": str(broken)}))


@pytest.mark.parametrize("form", ["comma", "json-text", "json-list"])
def test_several_measurement_files_current_image_first(tmp_path: Path, form: str) -> None:
    following = next_image_measurements(tmp_path)
    value: Any = {
        "comma": f" {MEASUREMENTS} , {following}",
        "json-text": json.dumps([str(MEASUREMENTS), str(following)]),
        "json-list": [str(MEASUREMENTS), str(following)],
    }[form]
    config = load_config(context(tmp_path / "app", **{"vault:measurements": value}))
    assert config.measurements is not None
    assert config.measurements.pcr0 == json.loads(MEASUREMENTS.read_text())["Measurements"]["PCR0"]
    assert [image.pcr0 for image in config.additional_measurements] == ["1" * 96]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"{MEASUREMENTS},", "empty entry"),
        (f"{MEASUREMENTS},{MEASUREMENTS}", "same enclave image twice"),
        (f'["{MEASUREMENTS}"', "JSON array"),
        ("[1, 2]", "JSON array of paths"),
    ],
)
def test_bad_measurement_lists_are_refused(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(context(tmp_path, **{"vault:measurements": value}))


def test_a_single_measurements_file_has_no_additional_images(tmp_path: Path) -> None:
    assert load_config(context(tmp_path)).additional_measurements == ()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("vault:account", "12345", "12 digits"),
        ("vault:account", "", "is required"),
        ("vault:region", "Europe", "not a region"),
        ("vault:domainName", "vault.other.org", "inside"),
        ("vault:vpcCidr", "10.0.0.0/8", "/16"),
        ("vault:auditRetentionDays", "-1", "at least 0"),
        ("vault:scaling", '{"cpu_hgh": 80}', "unknown thresholds"),
        ("vault:artifactBucket", "bucket", "not both"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(context(tmp_path, **{key: value}))


def test_artifacts_must_be_complete(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"enclave-vault\.eif"):
        load_config(context(tmp_path / "a", **{"vault:artifactsDir": str(empty)}))
    with pytest.raises(ConfigError, match="artifactKey"):
        load_config(context(tmp_path / "b", **{"vault:artifactsDir": "", "vault:artifactBucket": "b"}))
    config = load_config(
        context(
            tmp_path / "c",
            **{"vault:artifactsDir": "", "vault:artifactBucket": "b", "vault:artifactKey": "k.zip"},
        )
    )
    assert (config.artifacts.bucket, config.artifacts.key) == ("b", "k.zip")


PRIMARY_KEY = "arn:aws:kms:eu-west-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "value", ["us-west-2, ap-south-1", '["us-west-2", "ap-south-1"]', ["us-west-2", "ap-south-1"]]
)
def test_replica_regions_are_read_in_every_form(tmp_path: Path, value: Any) -> None:
    config = load_config(context(tmp_path, **{"vault:replicaRegions": value}))
    assert config.replica_regions == ("us-west-2", "ap-south-1")
    assert config.primary_key_region is None
    assert load_config(context(tmp_path / "none")).replica_regions == ()


def test_a_replica_deployment_names_its_primary_and_itself(tmp_path: Path) -> None:
    config = load_config(
        context(
            tmp_path,
            region="us-west-2",
            **{"vault:primaryKeyArn": PRIMARY_KEY, "vault:replicaRegions": "us-west-2"},
        )
    )
    assert config.primary_key_region == "eu-west-1"
    assert config.replica_regions == ("us-west-2",)


@pytest.mark.parametrize(
    ("region", "overrides", "message"),
    [
        ("eu-west-1", {"vault:replicaRegions": "Europe"}, "not a region name"),
        ("eu-west-1", {"vault:replicaRegions": "us-west-2,us-west-2"}, "twice"),
        ("eu-west-1", {"vault:replicaRegions": '["us-west-2"'}, "JSON array"),
        ("eu-west-1", {"vault:replicaRegions": "eu-west-1"}, "primary key's region"),
        # A replica the primary's policy would refuse to replicate to.
        ("us-west-2", {"vault:primaryKeyArn": PRIMARY_KEY}, "must list us-west-2"),
        (None, {"vault:primaryKeyArn": PRIMARY_KEY}, "must list the replica's region"),
        (
            "us-west-2",
            {"vault:primaryKeyArn": PRIMARY_KEY, "vault:replicaRegions": "ap-south-1"},
            "must list us-west-2",
        ),
        (
            "us-west-2",
            {"vault:primaryKeyArn": PRIMARY_KEY, "vault:replicaRegions": "us-west-2,eu-west-1"},
            "primary key's region",
        ),
        ("eu-west-1", {"vault:primaryKeyArn": PRIMARY_KEY, "vault:replicaRegions": "eu-west-1"}, "another"),
        ("us-west-2", {"vault:primaryKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/1234"}, "multi-region"),
        (
            "us-west-2",
            {"vault:primaryKeyArn": PRIMARY_KEY.replace("123456789012", "999999999999")},
            "within its account",
        ),
    ],
)
def test_inconsistent_key_regions_are_refused(
    tmp_path: Path, region: str | None, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(context(tmp_path, region=region, **overrides))
