"""Enclave discovery: descriptions, the static registry and the nitro-cli registry (spec 3.5)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from unit.parent.fakes import FakeNitroCli, asgi_client, described, make_services
from vault.parent.config import ConfigError, ParentConfig, parse_config, static_description
from vault.parent.nitro_cli import NitroCli, NitroCliError, NitroCliRegistry, missing_enclaves
from vault.parent.registry import EnclaveDescription, StaticRegistry, parse_descriptions

pytestmark = pytest.mark.anyio

ACM = described(4, name="acm-enclave")


def registry(cli: FakeNitroCli, eif: str = "enclave-vault.eif", **options: object) -> NitroCliRegistry:
    settings: dict[str, object] = {
        "eif_path": eif,
        "interval": 10.0,
        "vault_enclaves": 1,
        "skip_refresh": False,
        "skip_run": False,
    }
    settings.update(options)
    return NitroCliRegistry(NitroCli(str(cli.path), timeout=10), **settings)  # type: ignore[arg-type]


def run_enclave_calls(cli: FakeNitroCli) -> list[list[str]]:
    return [call for call in cli.calls if call[0] == "run-enclave"]


# -- descriptions --------------------------------------------------------------------------------


def test_a_describe_enclaves_sample_parses_and_round_trips() -> None:
    sample = described(16, Measurements={"HashAlgorithm": "Sha384 { ... }", "PCR0": "ab" * 48}, Future="kept")
    description = EnclaveDescription.model_validate(sample)
    assert description.enclave_cid == 16
    assert description.state == "RUNNING"
    assert description.flags == "NONE"
    assert description.is_vault_enclave
    assert description.to_json() == sample


def test_entries_that_are_not_enclaves_are_dropped() -> None:
    parsed = parse_descriptions(
        [described(16), {"EnclaveCID": 2**32}, {"EnclaveName": "x"}, "text", described(17)]
    )
    assert [d.enclave_cid for d in parsed] == [16, 17]


def test_static_registry_keeps_only_vault_enclaves() -> None:
    static = StaticRegistry([static_description(16), ACM, EnclaveDescription.model_validate(described(17))])
    assert [d.enclave_cid for d in static.enclaves()] == [16, 17]


@pytest.mark.parametrize(
    ("listed", "wanted", "missing"),
    [
        ([], 1, 1),
        ([ACM], 1, 1),
        ([ACM, described(16)], 1, 0),
        ([described(16), described(17), described(18)], 1, 0),  # upstream's u32 underflow case
        ([ACM, described(16)], 2, 1),
        ([ACM, described(16, name="enclave-vault-old")], 1, 0),
    ],
)
def test_missing_enclaves_counts_only_vault_enclaves_and_never_goes_negative(
    listed: list[dict[str, object]], wanted: int, missing: int
) -> None:
    assert missing_enclaves(parse_descriptions(listed), wanted) == missing


# -- nitro-cli -----------------------------------------------------------------------------------


async def test_refresh_caches_the_vault_enclaves(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path, [ACM, described(16)])
    nitro = registry(cli)
    await nitro.refresh()
    assert [d.enclave_cid for d in nitro.enclaves()] == [16]
    assert cli.calls == [["describe-enclaves"]]


async def test_refresh_launches_a_missing_enclave_with_upstreams_arguments(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path, [ACM])
    nitro = registry(cli, eif=str(tmp_path / "enclave-vault.eif"))
    await nitro.refresh()
    assert run_enclave_calls(cli) == [
        [
            "run-enclave",
            "--eif-path",
            str(tmp_path / "enclave-vault.eif"),
            "--cpu-count",
            "1",
            "--memory",
            "512",
        ]
    ]
    # Described again at once, so the new enclave serves without waiting a cycle.
    assert [d.enclave_cid for d in nitro.enclaves()] == [17]
    await nitro.refresh()
    assert len(run_enclave_calls(cli)) == 1


async def test_configured_enclave_size_reaches_nitro_cli(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path, [ACM])
    eif = str(tmp_path / "enclave-vault.eif")
    config = parse_config(
        ["--nitro-cli", str(cli.path), "--eif-path", eif, "--enclave-memory-mib", "2816"],
        {"PARENT_ENCLAVE_CPU_COUNT": "2"},
    )
    nitro = NitroCliRegistry.from_config(config)
    await nitro.refresh()
    assert run_enclave_calls(cli) == [
        ["run-enclave", "--eif-path", eif, "--cpu-count", "2", "--memory", "2816"]
    ]
    (launched,) = nitro.enclaves()
    assert (launched.to_json()["NumberOfCPUs"], launched.to_json()["MemoryMiB"]) == (2, 2816)


async def test_skip_run_describes_but_never_launches(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path, [ACM])
    nitro = registry(cli, skip_run=True)
    await nitro.refresh()
    assert nitro.enclaves() == ()
    assert run_enclave_calls(cli) == []


async def test_more_enclaves_than_wanted_launch_nothing(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path, [ACM, described(16), described(17)])
    nitro = registry(cli)
    await nitro.refresh()
    assert run_enclave_calls(cli) == []
    assert [d.enclave_cid for d in nitro.enclaves()] == [16, 17]


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        (
            {"fail": "[ E36 ] Enclave boot failure", "exit": 1},
            "error running command: describe-enclaves exited with 1",
        ),
        ({"raw": "{not json"}, "not JSON"),
        ({"raw": '{"EnclaveCID": 16}'}, "not print a JSON array"),
    ],
)
async def test_describe_failures(tmp_path: Path, state: dict[str, object], fragment: str) -> None:
    cli = FakeNitroCli(tmp_path)
    cli.set_state(enclaves=[], **state)
    with pytest.raises(NitroCliError) as failed:
        await registry(cli).refresh()
    assert fragment in str(failed.value)


async def test_a_hanging_nitro_cli_is_killed_at_its_timeout(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path)
    cli.set_state(enclaves=[], sleep=30)
    started = time.monotonic()
    with pytest.raises(NitroCliError, match="did not finish"):
        await NitroCli(str(cli.path), timeout=0.5).describe_enclaves()
    assert time.monotonic() - started < 5


async def test_a_missing_binary_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NitroCliError, match="cannot run"):
        await NitroCli(str(tmp_path / "no-such-nitro-cli"), timeout=1).describe_enclaves()


async def test_the_background_loop_refreshes_and_survives_failures(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path)
    cli.set_state(enclaves=[], fail="nitro-cli is not ready", exit=1)
    nitro = registry(cli, interval=0.05, skip_run=True)
    await nitro.start()
    try:
        with anyio.fail_after(10):
            while len(cli.calls) < 2:
                await anyio.sleep(0.05)
        assert nitro.enclaves() == ()
        cli.set_state(enclaves=[described(16)])
        with anyio.fail_after(10):
            while not nitro.enclaves():
                await anyio.sleep(0.05)
    finally:
        await nitro.stop()
    calls = len(cli.calls)
    await anyio.sleep(0.2)
    assert len(cli.calls) == calls  # stopped means stopped


async def test_skip_refresh_never_runs_nitro_cli(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path, [described(16)])
    nitro = registry(cli, interval=0.01, skip_refresh=True)
    await nitro.start()
    await anyio.sleep(0.1)
    await nitro.stop()
    assert cli.calls == []
    assert nitro.enclaves() == ()


def test_an_eif_that_nitro_cli_would_not_name_enclave_vault_is_refused(tmp_path: Path) -> None:
    cli = FakeNitroCli(tmp_path)
    with pytest.raises(ConfigError, match="enclave-vault"):
        registry(cli, eif="images/vault.eif")
    # Fine when nothing is launched.
    registry(cli, eif="images/vault.eif", skip_run=True)


async def test_get_enclaves_through_nitro_cli(tmp_path: Path, uds_dir: Path) -> None:
    cli = FakeNitroCli(tmp_path, [ACM, described(16)])
    config = ParentConfig(nitro_cli=str(cli.path), skip_refresh_enclaves=False, skip_run_enclaves=True)
    services = make_services(uds_dir)
    services.registry = NitroCliRegistry.from_config(config)
    async with asgi_client(services) as client:
        with anyio.fail_after(10):
            while not (await client.get("/enclaves")).json():
                await anyio.sleep(0.05)
        response = await client.get("/enclaves")
    assert response.json() == [described(16)]
