"""Mutation testing of the security-critical modules with mutmut (``nox -s mutation``).

Each module is mutated in its own scratch copy of the checkout (under ``.nox/mutation-work/``, so the
working tree never holds a ``mutants/`` directory), against only the tests that cover it: mutmut
first runs that selection once to learn which test reaches which function, then runs, for every
mutant, only the tests that reach the mutated function. Prints each module's score, its surviving
mutants with their diffs, and the total; exits non-zero below the target.

    python -m tests.mutation.run                       # every module in MODULES
    python -m tests.mutation.run vault/common/framing.py emulator/aws/sigv4.py
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".nox" / "mutation-work"  # not .nox/mutation: that is the session's virtualenv
TARGET = 0.95

# Module -> the tests that exercise it. Narrow on purpose: the selection runs once per module
# before the mutants, and a test outside it can neither kill nor slow a mutant.
MODULES: dict[str, tuple[str, ...]] = {
    "emulator/nitro/attestation.py": ("tests/unit/attestation", "tests/property/attestation"),
    "emulator/nitro/cose.py": (
        "tests/unit/attestation/test_cose_pki.py",
        "tests/unit/attestation/test_mutation_cose.py",
        "tests/unit/attestation/test_real_documents.py",
        "tests/unit/attestation/test_document_verifier.py",
    ),
    "emulator/nitro/pki.py": ("tests/unit/attestation", "tests/property/attestation"),
    "emulator/aws/kms/policy.py": (
        "tests/unit/attestation",
        "tests/property/attestation",
        "tests/property/key_policy",
    ),
    "vault/infra/key_policy.py": (
        "tests/property/key_policy",
        "tests/unit/attestation/test_kms_front_matrix.py",
    ),
    "emulator/aws/kms/front.py": (
        "tests/unit/attestation/test_kms_front.py",
        "tests/unit/attestation/test_kms_front_gate.py",
        "tests/unit/attestation/test_kms_front_matrix.py",
        "tests/unit/attestation/test_kms_front_recipient.py",
        "tests/unit/attestation/test_kms_quotas.py",
    ),
    "emulator/aws/sigv4.py": (
        "tests/unit/emulator/test_sigv4.py",
        "tests/unit/emulator/test_mutation_sigv4.py",
    ),
    "vault/common/hpke.py": ("tests/unit/common/test_hpke.py", "tests/property/common/test_hpke_props.py"),
    "emulator/aws/kms/cms.py": (
        "tests/unit/attestation/test_ber_cms.py",
        "tests/unit/attestation/test_key_release.py",
    ),
    "vault/enclave/cms.py": (
        "tests/unit/attestation/test_ber_cms.py",
        "tests/unit/attestation/test_key_release.py",
    ),
    "vault/enclave/handler.py": ("tests/unit/enclave", "tests/property/enclave"),
    "vault/enclave/kms_decryptor.py": (
        "tests/unit/enclave/test_kms_decryptor.py",
        "tests/unit/attestation/test_key_release.py",
    ),
    "vault/common/framing.py": (
        "tests/unit/common/test_framing.py",
        "tests/unit/common/test_mutation_framing.py",
        "tests/property/common/test_framing_props.py",
    ),
    "vault/common/logs.py": ("tests/unit/common/test_logs.py", "tests/unit/common/test_mutation_logs.py"),
    "vault/common/authorization.py": (
        "tests/unit/common/test_authorization.py",
        "tests/unit/enclave/test_handler_authorization.py",
        "tests/unit/api/test_authorization.py",
    ),
}

# Survivors judged equivalent: no input can tell them from the original. Listed with the reason in
# the README ("Mutation testing"); the numbers are mutmut's and move when the function changes.
EQUIVALENT: dict[str, str] = {
    "vault.common.framing.x_read_json__mutmut_9": '"UTF-8" and "utf-8" name the same codec',
    "vault.common.framing.x_write_json__mutmut_16": '"UTF-8" and "utf-8" name the same codec',
    "vault.common.framing.x_write_json__mutmut_8": "ensure_ascii=None is falsy, as False",
    "vault.common.logs.xǁJsonFormatterǁformat__mutmut_46": "ensure_ascii=None is falsy, as False",
    "vault.common.logs.x_configure_logging__mutmut_2": 'the level is upper-cased: "info" is "INFO"',
    "vault.common.logs.x_configure_logging__mutmut_7": (
        "StreamHandler(None) takes sys.stderr at construction, the object passed explicitly"
    ),
    "vault.common.logs.x_configure_logging__mutmut_15": (
        "raiseExceptions is only tested for truth: None as False"
    ),
    "vault.common.hpke.x__expand__mutmut_7": "one block more, cut off by the final slice to length",
    "vault.common.hpke.x__expand__mutmut_18": "every suite's expand length fits one hash block",
    "vault.common.hpke.x__expand__mutmut_20": "every suite's expand length fits one hash block",
    "vault.common.hpke.x__expand__mutmut_21": "every suite's expand length fits one hash block",
    "vault.common.hpke.x__expand__mutmut_22": "every suite's expand length fits one hash block",
    "vault.common.hpke.x__labeled_expand__mutmut_18": '">h" and ">H" pack lengths below 32768 alike',
    "vault.common.hpke.x__kem_suite_id__mutmut_9": '">h" and ">H" pack KEM ids below 32768 alike',
    "vault.common.hpke.xǁRecipientǁfrom_scalar__mutmut_11": 'int.from_bytes defaults to "big" (3.11+)',
    "vault.common.authorization.x_expression_digest__mutmut_7": '"UTF-8" and "utf-8" name the same codec',
    "vault.common.authorization.xǁGrantǁto_bytes__mutmut_35": "ensure_ascii defaults to True",
    "vault.common.authorization.xǁGrantǁfrom_bytes__mutmut_13": '"ASCII" and "ascii" name the same codec',
    "vault.common.authorization.xǁSignedAuthorizationǁto_wire__mutmut_10": (
        '"ASCII" and "ascii" name the same codec'
    ),
    "vault.common.authorization.xǁSignedAuthorizationǁto_wire__mutmut_14": (
        '"ASCII" and "ascii" name the same codec'
    ),
    "vault.common.authorization.xǁSignedAuthorizationǁto_wire__mutmut_18": (
        '"ASCII" and "ascii" name the same codec'
    ),
    "vault.common.authorization.x__b64__mutmut_7": '"ASCII" and "ascii" name the same codec',
    **{
        f"vault.enclave.kms_decryptor.x__client_error__mutmut_{n}": (
            "botocore's JSON error parser always sets Error.Code (the HTTP status without __type):"
            " the defaults for a missing Error or Code are never read"
        )
        for n in (3, 5, 12, 14, 18, 19, 20)
    },
    "vault.enclave.kms_decryptor.x__client_error__mutmut_44": (
        "KeyDecryptError's default code is KEY_DECRYPT_FAILED, the one passed"
    ),
    "vault.enclave.kms_decryptor.xǁKmsKeyDecryptorǁ_call_kms__mutmut_32": (
        "KeyDecryptError's default code is KEY_DECRYPT_FAILED, the one passed"
    ),
    "vault.enclave.kms_decryptor.xǁKmsKeyDecryptorǁ__init____mutmut_27": (
        "botocore connects only to the in-process loopback bridge, which is listening: the kernel"
        " completes the connect at once, so its timeout cannot fire"
    ),
    "vault.enclave.kms_decryptor.xǁKmsKeyDecryptorǁ__init____mutmut_30": (
        "botocore connects only to the in-process loopback bridge, which is listening: the kernel"
        " completes the connect at once, so its timeout cannot fire"
    ),
    "vault.enclave.kms_decryptor.xǁKmsKeyDecryptorǁ_client__mutmut_34": (
        "OrderedDict.popitem tests last for truth: None as False"
    ),
    "vault.infra.key_policy.x_pcr3_for_role_arn__mutmut_8": '"UTF-8" and "utf-8" name the same codec',
    "vault.infra.key_policy.xǁEnclaveMeasurementsǁ__post_init____mutmut_19": (
        "PCR8 is the loop's last name: break and continue both end it"
    ),
    "vault.infra.key_policy.xǁEnclaveMeasurementsǁfrom_file__mutmut_3": (
        "encoding=None is the locale's, UTF-8 wherever this runs (Python coerces the C locale);"
        " nitro-cli writes ASCII, which any ASCII-compatible locale reads alike"
    ),
    "vault.infra.key_policy.xǁEnclaveMeasurementsǁfrom_file__mutmut_6": (
        '"UTF-8" and "utf-8" name the same codec'
    ),
    "vault.enclave.handler.xǁ_Refusalǁ__init____mutmut_1": (
        "a refusal is read through .code and .message, never str(): the exception's args are unused"
    ),
    **{
        f"vault.enclave.handler.x__describe_validation__mutmut_{n}": (
            "the message is built from each problem's loc and msg only: url, input and ctx are"
            " extra keys never read"
        )
        for n in (5, 6, 7, 8, 9, 10)
    },
    **{
        f"vault.enclave.handler.xǁRequestHandlerǁ_index_key__mutmut_{n}": (
            "the index key was already decoded with validate=True by _check_index_parameters:"
            " a strict-valid string decodes alike either way"
        )
        for n in (8, 9)
    },
    **{
        name: '"UTF-8" and "utf-8" name the same codec'
        for name in (
            "vault.enclave.handler.x__parse_document__mutmut_4",
            "vault.enclave.handler.x__utf8__mutmut_3",
            "vault.enclave.handler.x__open_fields__mutmut_28",
            "vault.enclave.handler.x__open_fields__mutmut_40",
        )
    },
    **{
        name: '"ASCII" and "ascii" name the same codec'
        for name in (
            "vault.enclave.handler.x__check_index_parameters__mutmut_31",
            "vault.enclave.handler.x__decode_key_ciphertext__mutmut_7",
        )
    },
    **{
        name: 'int.to_bytes and int.from_bytes default to "big" (3.11+)'
        for name in (
            "emulator.nitro.cose.x_sign1__mutmut_22",
            "emulator.nitro.cose.x_sign1__mutmut_28",
            "emulator.nitro.cose.x_verify_sign1__mutmut_33",
            "emulator.nitro.cose.x_verify_sign1__mutmut_40",
        )
    },
    "emulator.aws.sigv4.xǁSigV4Verifierǁverify__mutmut_80": (
        'a missing X-Amz-Date read as "XXXX" instead of "" fails strptime the same way'
    ),
    "emulator.aws.sigv4.xǁSigV4Verifierǁverify__mutmut_191": '"UTF-8" and "utf-8" name the same codec',
    "emulator.aws.sigv4.xǁSigV4Verifierǁverify__mutmut_201": '"UTF-8" and "utf-8" name the same codec',
    "emulator.aws.sigv4.x_signing_key__mutmut_7": '"UTF-8" and "utf-8" name the same codec',
    "emulator.aws.sigv4.x_signing_key__mutmut_19": '"UTF-8" and "utf-8" name the same codec',
    "emulator.aws.sigv4.x_canonical_request__mutmut_6": (
        'quote() never encodes "~" (unreserved), so safe="/" (its default) and safe="/~" agree'
    ),
    "emulator.aws.sigv4.x_canonical_request__mutmut_10": (
        'quote() never encodes "X" (unreserved), so adding it to safe changes nothing'
    ),
    "emulator.aws.sigv4.x_canonical_request__mutmut_26": (
        'quote() never encodes "X" (unreserved), so adding it to safe changes nothing'
    ),
    "emulator.aws.sigv4.x_canonical_request__mutmut_31": (
        'quote() never encodes "X" (unreserved), so adding it to safe changes nothing'
    ),
}

# What the tests need besides the mutated packages and tests/ (which mutmut copies itself).
COPY = ("vault", "emulator", "tests", "benchmarks", "pyproject.toml")
# Prints each named mutant's status and diff; run inside the scratch copy (mutmut reads its config there).
SHOW = """
import sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
for name in sys.argv[1:]:
    print(f"# {name}")
    print(get_diff_for_mutant(name, path=find_mutant(name).path))
"""
RESULT = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")


@dataclass(frozen=True)
class Outcome:
    module: str
    counts: dict[str, int]
    survivors: tuple[str, ...]
    seconds: float

    @property
    def judged(self) -> int:
        """Mutants with a verdict; 'not checked' and 'skipped' ones are not counted either way."""
        return sum(n for status, n in self.counts.items() if status not in ("not checked", "skipped"))

    @property
    def killed(self) -> int:
        return self.judged - len(self.survivors)

    @property
    def score(self) -> float:
        return self.killed / self.judged if self.judged else 1.0


def _toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def _prepare(module: str, tests: tuple[str, ...]) -> Path:
    """A fresh copy of the checkout whose pyproject.toml carries this module's mutmut config."""
    work = WORK / module.replace("/", "_").removesuffix(".py")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache", "mutants")
    for name in COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=ignore)
        else:
            shutil.copy2(source, work / name)
    config = (
        "\n[tool.mutmut]\n"
        f"source_paths = {_toml_list(['vault', 'emulator'])}\n"
        f"only_mutate = {_toml_list([module])}\n"
        f"also_copy = {_toml_list(['benchmarks'])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        # No xdist, no per-test timeout plugin fight: mutmut forks per mutant and times it itself.
        f"pytest_add_cli_args = {_toml_list(['-p', 'no:cacheprovider', '-p', 'no:xdist', '-m', 'not e2e'])}\n"
        "use_git_change_detection = false\n"
    )
    with (work / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write(config)
    return work


def _run_module(module: str, tests: tuple[str, ...], mutmut: list[str], env: dict[str, str]) -> Outcome:
    work = _prepare(module, tests)
    start = time.perf_counter()
    subprocess.run([*mutmut, "run"], cwd=work, env=env, check=False)
    seconds = time.perf_counter() - start
    listing = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=work, env=env, check=True, capture_output=True, text=True
    ).stdout
    counts: dict[str, int] = {}
    survivors: list[str] = []
    for line in listing.splitlines():
        match = RESULT.match(line)
        if match is None:
            continue
        status = match["status"].strip()
        counts[status] = counts.get(status, 0) + 1
        # A mutant that hangs the tests is caught (the run would not finish); one no test reaches is not.
        if status in ("survived", "no tests", "suspicious"):
            survivors.append(match["name"])
    if survivors:
        # One process for all diffs: ``mutmut show`` per mutant re-reads the whole tree each time.
        subprocess.run([sys.executable, "-c", SHOW, *survivors], cwd=work, env=env, check=False)
    return Outcome(module=module, counts=counts, survivors=tuple(survivors), seconds=seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("modules", nargs="*", help="module paths (default: every module in MODULES)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not a mutation target: {', '.join(unknown)} (known: {', '.join(MODULES)})")
    selected = args.modules or list(MODULES)
    mutmut = [sys.executable, "-m", "mutmut"]
    env = {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "dev")}
    outcomes = [_run_module(module, MODULES[module], mutmut, env) for module in selected]
    print(f"\n{'module':<36} {'killed':>7} {'judged':>7} {'score':>7} {'time':>7}  survivors (equivalent)")
    for o in outcomes:
        equivalent = sum(1 for name in o.survivors if name in EQUIVALENT)
        print(
            f"{o.module:<36} {o.killed:>7} {o.judged:>7} {o.score:>7.1%} {o.seconds:>6.0f}s"
            f"  {len(o.survivors)} ({equivalent})"
        )
        for name in o.survivors:
            print(f"    {name}: {EQUIVALENT.get(name, 'not explained')}")
    killed = sum(o.killed for o in outcomes)
    judged = sum(o.judged for o in outcomes)
    score = killed / judged if judged else 1.0
    print(f"{'total':<36} {killed:>7} {judged:>7} {score:>7.1%} {sum(o.seconds for o in outcomes):>6.0f}s")
    return 0 if score >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
