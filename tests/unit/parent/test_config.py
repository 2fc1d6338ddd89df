"""Parent configuration: defaults, each flag, environment variables, refusals (spec 3.1, 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault.common.transport import TransportConfig
from vault.parent.config import (
    DEFAULT_EIF_PATH,
    DEFAULT_ENCLAVE_CPU_COUNT,
    DEFAULT_ENCLAVE_MEMORY_MIB,
    DEFAULT_IMDS_ENDPOINT,
    ConfigError,
    EnclaveTimeouts,
    ParentConfig,
    parse_config,
    parse_static_enclaves,
)
from vault.parent.enclave_client import ABORT_MARGIN


def test_programmatic_defaults_never_touch_nitro_cli() -> None:
    config = ParentConfig()
    assert (config.host, config.port, config.role) == ("127.0.0.1", 8080, None)
    assert config.skip_refresh_enclaves and config.skip_run_enclaves
    assert config.imds_endpoint == "http://169.254.169.254"
    assert config.max_body_size == 1024 * 1024
    assert config.request_timeout == 30.0


def test_command_line_defaults() -> None:
    config = parse_config([], {})
    assert config.host == "127.0.0.1"
    assert config.port == 8080
    assert config.role is None
    assert not config.skip_refresh_enclaves
    assert not config.skip_run_enclaves
    assert config.imds_endpoint == DEFAULT_IMDS_ENDPOINT
    assert config.static_enclaves is None
    assert config.eif_path == DEFAULT_EIF_PATH
    assert config.nitro_cli == "nitro-cli"
    assert config.vault_enclaves == 1
    assert (config.enclave_cpu_count, config.enclave_memory_mib) == (1, 512)
    assert (DEFAULT_ENCLAVE_CPU_COUNT, DEFAULT_ENCLAVE_MEMORY_MIB) == (1, 512)
    assert config.refresh_interval == 10.0
    assert config.log_level == "INFO"
    assert config.transport == TransportConfig()


def test_enclave_timeouts_leave_the_api_time_to_answer() -> None:
    # The API waits 5 s for the parent; the parent must give up on an enclave well before.
    timeouts = parse_config([], {}).enclave_timeouts
    assert timeouts.total + ABORT_MARGIN <= 3.5
    assert timeouts == EnclaveTimeouts()


@pytest.mark.parametrize(
    ("argv", "attribute", "expected"),
    [
        (["--host", "0.0.0.0"], "host", "0.0.0.0"),
        (["--port", "9090"], "port", 9090),
        (["--port", "0"], "port", 0),
        (["--port", "65535"], "port", 65535),
        (["--role", "vault-instance-role"], "role", "vault-instance-role"),
        (["--skip-refresh-enclaves"], "skip_refresh_enclaves", True),
        (["--skip-run-enclaves"], "skip_run_enclaves", True),
        (["--imds-endpoint", "http://127.0.0.1:8111/"], "imds_endpoint", "http://127.0.0.1:8111"),
        (["--imds-timeout", "0.25"], "imds_timeout", 0.25),
        (["--eif-path", "images/enclave-vault-2.eif"], "eif_path", "images/enclave-vault-2.eif"),
        (["--nitro-cli", "bin/nitro-cli"], "nitro_cli", "bin/nitro-cli"),
        (["--vault-enclaves", "2"], "vault_enclaves", 2),
        (["--enclave-cpu-count", "2"], "enclave_cpu_count", 2),
        (["--enclave-memory-mib", "2816"], "enclave_memory_mib", 2816),
        (["--enclave-memory-mib", "64"], "enclave_memory_mib", 64),
        (["--refresh-interval", "2.5"], "refresh_interval", 2.5),
        (["--enclave-workers", "4"], "enclave_workers", 4),
        (["--request-timeout", "12"], "request_timeout", 12.0),
        (["--log-level", "debug"], "log_level", "DEBUG"),
    ],
)
def test_each_flag(argv: list[str], attribute: str, expected: object) -> None:
    assert getattr(parse_config(argv, {}), attribute) == expected


def test_enclave_timeout_flags() -> None:
    config = parse_config(["--enclave-connect-timeout", "0.2", "--enclave-read-timeout", "1.5"], {})
    assert config.enclave_timeouts == EnclaveTimeouts(connect=0.2, read=1.5)
    assert config.enclave_timeouts.total == pytest.approx(1.7)


def test_all_flags_together() -> None:
    config = parse_config(
        [
            "--host=::1",
            "--port=8443",
            "--role=r",
            "--skip-refresh-enclaves",
            "--skip-run-enclaves",
            "--imds-endpoint=http://127.0.0.1:1",
            "--enclaves=16,17",
            "--log-level=WARNING",
        ],
        {},
    )
    assert (config.host, config.port, config.role) == ("::1", 8443, "r")
    assert config.skip_refresh_enclaves and config.skip_run_enclaves
    assert config.imds_endpoint == "http://127.0.0.1:1"
    assert config.static_enclaves is not None
    assert [e["EnclaveCID"] for e in config.static_enclaves] == [16, 17]
    assert config.log_level == "WARNING"


def test_environment_variables() -> None:
    config = parse_config(
        [],
        {
            "PARENT_HTTP_HOST": "10.0.0.5",
            "PARENT_HTTP_PORT": "8081",
            "PARENT_ROLE_NAME": "env-role",
            "PARENT_SKIP_REFRESH_ENCLAVES": "true",
            "PARENT_SKIP_RUN_ENCLAVES": "1",
            "PARENT_IMDS_ENDPOINT": "http://127.0.0.1:9",
            "PARENT_STATIC_ENCLAVES": "[20]",
            "PARENT_ENCLAVE_READ_TIMEOUT": "2",
            "PARENT_ENCLAVE_CPU_COUNT": "2",
            "PARENT_ENCLAVE_MEMORY_MIB": "2816",
            "VAULT_VSOCK_TRANSPORT": "uds",
            "VAULT_VSOCK_UDS_DIR": "run/vsock",
        },
    )
    assert (config.host, config.port, config.role) == ("10.0.0.5", 8081, "env-role")
    assert config.skip_refresh_enclaves and config.skip_run_enclaves
    assert config.imds_endpoint == "http://127.0.0.1:9"
    assert config.static_enclaves is not None and config.static_enclaves[0]["EnclaveCID"] == 20
    assert config.enclave_timeouts.read == 2.0
    assert (config.enclave_cpu_count, config.enclave_memory_mib) == (2, 2816)
    assert config.transport == TransportConfig(kind="uds", uds_dir=Path("run/vsock"))


def test_flags_win_over_environment() -> None:
    config = parse_config(
        ["--port", "9000", "--role", "flag-role", "--enclave-memory-mib", "1024"],
        {"PARENT_HTTP_PORT": "8081", "PARENT_ROLE_NAME": "x", "PARENT_ENCLAVE_MEMORY_MIB": "2816"},
    )
    assert (config.port, config.role) == (9000, "flag-role")
    assert config.enclave_memory_mib == 1024


@pytest.mark.parametrize("role", ["", "   "])
def test_an_empty_role_means_discover_it(role: str) -> None:
    # Decision D11: upstream defaulted to the literal string "None".
    assert parse_config([], {"PARENT_ROLE_NAME": role}).role is None
    assert parse_config(["--role", role], {}).role is None


def test_the_string_none_is_a_role_name_like_any_other() -> None:
    assert parse_config(["--role", "None"], {}).role == "None"


@pytest.mark.parametrize("value", ["false", "0", "no", "off", ""])
def test_false_skip_flags_from_environment(value: str) -> None:
    config = parse_config([], {"PARENT_SKIP_REFRESH_ENCLAVES": value, "PARENT_SKIP_RUN_ENCLAVES": value})
    assert not config.skip_refresh_enclaves and not config.skip_run_enclaves


@pytest.mark.parametrize(
    ("argv", "environ", "fragment"),
    [
        (["--port", "99999"], {}, "invalid port 99999"),
        (["--port", "65536"], {}, "invalid port 65536"),
        (["--port", "-1"], {}, "invalid port -1"),
        (["--port", "http"], {}, "not an integer"),
        ([], {"PARENT_HTTP_PORT": "99999"}, "invalid port 99999"),
        ([], {"PARENT_SKIP_RUN_ENCLAVES": "maybe"}, "PARENT_SKIP_RUN_ENCLAVES"),
        (["--enclave-read-timeout", "0"], {}, "positive"),
        (["--enclave-connect-timeout", "-1"], {}, "positive"),
        (["--request-timeout", "nan"], {}, "positive"),
        (["--imds-timeout", "inf"], {}, "positive"),
        (["--enclave-workers", "0"], {}, "at least 1"),
        (["--enclave-cpu-count", "0"], {}, "invalid enclave CPU count 0: must be at least 1"),
        (["--enclave-cpu-count", "-2"], {}, "at least 1"),
        (["--enclave-cpu-count", "1.5"], {}, "not an integer"),
        ([], {"PARENT_ENCLAVE_CPU_COUNT": "two"}, "invalid enclave CPU count 'two'"),
        (["--enclave-memory-mib", "63"], {}, "invalid enclave memory (MiB) 63: must be at least 64"),
        (["--enclave-memory-mib", "0"], {}, "at least 64"),
        (["--enclave-memory-mib", "2G"], {}, "not an integer"),
        ([], {"PARENT_ENCLAVE_MEMORY_MIB": "32"}, "at least 64"),
        (["--log-level", "chatty"], {}, "log level"),
        (["--enclaves", "16,x"], {}, "invalid enclave CID"),
        (["--enclaves", "4294967296"], {}, "32 bits"),
        (["--enclaves", "[true]"], {}, "not an integer"),
        (["--enclaves", '[{"EnclaveName": "enclave-vault"}]'], {}, "invalid enclave CID"),
        (["--enclaves", "[1,"], {}, "invalid enclave list"),
        (["--vault-enclaves", "0"], {}, "--skip-run-enclaves"),
        (["--unknown-flag"], {}, "unrecognized arguments"),
        ([], {"VAULT_VSOCK_TRANSPORT": "carrier-pigeon"}, "VAULT_VSOCK_TRANSPORT"),
    ],
)
def test_invalid_configuration_is_refused_with_a_reason(
    argv: list[str], environ: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(argv, environ)
    assert fragment in str(refused.value)


def test_static_enclaves_from_cids_and_descriptions() -> None:
    assert [e["EnclaveCID"] for e in parse_static_enclaves(" 16, 17 ,")] == [16, 17]
    described = parse_static_enclaves('[18, {"EnclaveCID": 19, "EnclaveID": "i-x-enc1", "State": "RUNNING"}]')
    assert described[0]["EnclaveName"] == "enclave-vault"
    assert described[1] == {
        "EnclaveCID": 19,
        "EnclaveID": "i-x-enc1",
        "State": "RUNNING",
        "EnclaveName": "enclave-vault",
    }
    assert parse_static_enclaves("") == ()


def test_the_startup_description_has_no_secrets_and_names_every_choice() -> None:
    described = parse_config(["--enclaves", "16"], {}).describe()
    assert described["static_enclaves"] == [16]
    assert {"host", "port", "role", "imds_endpoint", "enclave_read_timeout", "transport"} <= set(described)
    assert (described["enclave_cpu_count"], described["enclave_memory_mib"]) == (1, 512)
