"""The plugin's generic fixtures (``nsm``, ``attested_kms``, ``nitro_enclave``), used as a project would."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .test_enclave_spec import write_pong

pytest_plugins = ["pytester"]


def test_the_generic_fixtures_cost_nothing_until_requested(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_is_imported():
            heavy = [m for m in ("moto", "boto3", "emulator.tools.enclave_fixtures") if m in sys.modules]
            assert heavy == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    listed = pytester.runpytest("-p", "no:cacheprovider", "--fixtures")
    listed.stdout.fnmatch_lines(
        ["nsm*", "*emulated NSM*", "attested_kms*", "nitro_enclave*"], consecutive=False
    )


def test_nsm_signs_documents_for_the_measurements_given(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from vault.infra.key_policy import EnclaveMeasurements

        MEASURED = EnclaveMeasurements(pcr0="01" * 48, pcr1="02" * 48, pcr2="03" * 48)

        def test_a_document_carries_the_pcrs_and_verifies(nsm):
            document = nsm.verify(nsm.attest(MEASURED, user_data=b"hello", nonce=b"n1"))
            assert document.pcr_hex(0) == "01" * 48 and document.pcr_hex(2) == "03" * 48
            assert document.pcr_hex(3) == nsm.pcr3
            assert document.user_data == b"hello" and document.nonce == b"n1"

        def test_a_debug_enclave_reads_zero(nsm):
            document = nsm.verify(nsm.attest(MEASURED, debug_mode=True))
            assert document.pcr_hex(0) == "00" * 48

        def test_a_program_reaches_the_nsm_over_its_socket(nsm):
            from vault.enclave.nsm import SocketNsm

            client = SocketNsm(str(nsm.socket_for(MEASURED)))
            document = nsm.verify(client.attestation(public_key=None, user_data=b"u", nonce=None))
            assert document.pcr_hex(1) == "02" * 48
        """
    )
    # In process: these tests need the emulator loaded anyway.
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_attested_kms_answers_only_the_measured_enclave(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from botocore.exceptions import ClientError
        from vault.infra.key_policy import EnclaveMeasurements

        GOOD = EnclaveMeasurements(pcr0="01" * 48, pcr1="02" * 48, pcr2="03" * 48)
        OTHER = EnclaveMeasurements(pcr0="0f" * 48, pcr1="02" * 48, pcr2="03" * 48)

        def test_the_measured_enclave_gets_its_data_key_for_its_recipient_only(attested_kms):
            key = attested_kms.create_key(GOOD)
            recipient = attested_kms.recipient(GOOD)
            answer = attested_kms.client.generate_data_key(
                KeyId=key, KeySpec="AES_256", Recipient=recipient.parameter
            )
            assert "Plaintext" not in answer
            data_key = recipient.open(answer["CiphertextForRecipient"])
            assert len(data_key) == 32
            # The same key, decrypted for the same enclave, is the same data key.
            again = attested_kms.client.decrypt(
                CiphertextBlob=answer["CiphertextBlob"], Recipient=attested_kms.recipient(GOOD).parameter
            )
            assert "Plaintext" not in again

        def test_another_image_is_refused(attested_kms):
            key = attested_kms.create_key(GOOD)
            with pytest.raises(ClientError) as refused:
                attested_kms.client.generate_data_key(
                    KeyId=key, KeySpec="AES_256", Recipient=attested_kms.recipient(OTHER).parameter
                )
            assert refused.value.response["Error"]["Code"] == "AccessDeniedException"

        def test_no_attestation_is_refused(attested_kms):
            key = attested_kms.create_key(GOOD)
            with pytest.raises(ClientError) as refused:
                attested_kms.client.generate_data_key(KeyId=key, KeySpec="AES_256")
            assert refused.value.response["Error"]["Code"] == "AccessDeniedException"

        def test_a_recipient_from_a_document_already_made(attested_kms, nsm):
            from emulator.tools.enclave_fixtures import public_key_der, recipient_key

            key = attested_kms.create_key(GOOD)
            private = recipient_key()
            document = nsm.attest(GOOD, public_key=public_key_der(private))
            recipient = attested_kms.recipient_for(document, private)
            answer = attested_kms.client.generate_random(NumberOfBytes=16, Recipient=recipient.parameter)
            assert len(recipient.open(answer["CiphertextForRecipient"])) == 16
            assert key
        """
    )
    # In process: these tests need the emulator loaded anyway.
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_nitro_enclave_starts_a_spec_and_yields_its_address(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    spec = write_pong(tmp_path / "pong")
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            from pathlib import Path

            import pytest

            @pytest.fixture(scope="module")
            def nitro_enclave_spec():
                return Path({str(spec)!r})

            def test_pong(nitro_enclave):
                assert nitro_enclave.address() == (16, 5005)
                assert len(nitro_enclave.pcrs[0]) == 96
                with nitro_enclave.connect() as connection:
                    connection.sendall(b"ping")
                    assert connection.recv(16) == b"pong"
            """
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_nitro_enclave_without_a_spec_says_how_to_give_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_needs_a_spec(nitro_enclave):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*nitro_enclave needs a spec*"])
    assert result.ret != 0
