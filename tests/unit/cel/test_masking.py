"""The masking functions: ``mask``, ``email_domain``, ``year``, ``bucket``."""

from __future__ import annotations

import datetime

import pytest

from unit.cel.support import error_of, evaluate_one
from vault.enclave.cel import CelEngine


def _refusal(function: str, detail: str) -> str:
    return f"[out] Execution Error: Error executing function '{function}': {detail}"


@pytest.mark.parametrize(
    ("method", "global_"),
    [
        ("ssn.mask(4)", "mask(ssn, 4)"),
        ("email.email_domain()", "email_domain(email)"),
        ("dob.year()", "year(dob)"),
        ("date(dob).age().bucket(10)", "bucket(date(dob).age(), 10)"),
    ],
)
def test_method_and_global_forms_agree(fixed_engine: CelEngine, method: str, global_: str) -> None:
    fields: dict[str, str | None] = {"ssn": "123456789", "email": "Bob@Example.COM", "dob": "1979-04-05"}
    assert evaluate_one(fixed_engine, method, fields) == evaluate_one(fixed_engine, global_, fields)


class TestMask:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("mask('123456789', 4)", "*****6789"),
            ("mask('123-45-6789', 4)", "*******6789"),
            ("mask('123456789', 0)", "*********"),
            ("mask('123456789', 8)", "*23456789"),
            ("mask('4111111111111111', 4u)", "************1111"),
            # Code points, as size() and substring() count them.
            ("mask('Jürgen', 2)", "****en"),
            ("mask('日本語テキスト', 3)", "****キスト"),
            ("mask('', 0)", ""),
            ("mask('', 4)", ""),
        ],
    )
    def test_keeps_the_last_code_points(self, engine: CelEngine, expression: str, expected: str) -> None:
        assert evaluate_one(engine, expression) == expected

    @pytest.mark.parametrize("keep_last", [9, 10, 1000, 9223372036854775807])
    def test_a_value_no_longer_than_keep_last_is_masked_entirely(
        self, engine: CelEngine, keep_last: int
    ) -> None:
        # Never shown whole: a short or truncated value is masked like the rest.
        assert evaluate_one(engine, f"mask(ssn, {keep_last})", {"ssn": "123456789"}) == "*********"

    def test_the_result_is_a_cel_string(self, engine: CelEngine) -> None:
        assert evaluate_one(engine, "'xxx-' + mask('1234', 2) + '!'") == "xxx-**34!"
        assert evaluate_one(engine, "mask('1234', 2).endsWith('34')") is True
        assert evaluate_one(engine, "size(mask('Jürgen', 2))") == 6

    @pytest.mark.parametrize(
        ("expression", "detail"),
        [
            ("mask('abc', -1)", "keep_last must not be negative"),
            ("mask('abc', 1.0)", "expected an int argument for keep_last, got double"),
            ("mask('abc', true)", "expected an int argument for keep_last, got bool"),
            ("mask('abc', '1')", "expected an int argument for keep_last, got string"),
            ("mask(123, 1)", "expected a string argument, got int"),
            ("mask(null, 1)", "expected a string argument, got null_type"),
            ("mask(b'abc', 1)", "expected a string argument, got bytes"),
        ],
    )
    def test_refusals(self, engine: CelEngine, expression: str, detail: str) -> None:
        assert error_of(engine, expression) == _refusal("mask", detail)

    def test_wrong_number_of_arguments(self, engine: CelEngine) -> None:
        assert error_of(engine, "mask('abc')").startswith("[out] Execution Error: ")
        assert error_of(engine, "'abc'.mask(1, 2)").startswith("[out] Execution Error: ")

    def test_a_missing_field_is_an_error(self, engine: CelEngine) -> None:
        assert error_of(engine, "mask(ssn, 4)", {"ssn": None}) == _refusal(
            "mask", "expected a string argument, got null_type"
        )


class TestEmailDomain:
    @pytest.mark.parametrize(
        ("email", "expected"),
        [
            ("bob@example.com", "example.com"),
            ("Bob@Example.COM", "example.com"),
            # The last '@': a quoted local part may contain one.
            ('"a@b"@Mail.Example.org', "mail.example.org"),
            ("@example.com", "example.com"),
            ("bob@ÉCOLE.fr", "école.fr"),
            ("bob@localhost", "localhost"),
        ],
    )
    def test_domain_after_the_last_at_lowercased(self, engine: CelEngine, email: str, expected: str) -> None:
        assert evaluate_one(engine, "email_domain(email)", {"email": email}) == expected

    @pytest.mark.parametrize(
        ("email", "detail"),
        [
            ("bob.example.com", "no '@' in the email address"),
            ("", "no '@' in the email address"),
            ("bob@", "empty domain after '@'"),
            ("bob@example.com@", "empty domain after '@'"),
        ],
    )
    def test_refusals(self, engine: CelEngine, email: str, detail: str) -> None:
        assert error_of(engine, "email_domain(email)", {"email": email}) == _refusal("email_domain", detail)

    def test_refuses_non_strings(self, engine: CelEngine) -> None:
        assert error_of(engine, "email_domain(1)") == _refusal(
            "email_domain", "expected a string argument, got int"
        )


class TestYear:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("year('1979-04-05')", 1979),
            ("year('2000-2-29')", 2000),
            ("year('0001-01-01')", 1),
            ("year('9999-12-31')", 9999),
            ("year(date('1979-04-05'))", 1979),
            # The timestamp's own offset, as getFullYear() without a time zone.
            ("year(timestamp('2020-12-31T23:00:00-05:00'))", 2020),
            ("year(timestamp('2021-01-01T01:00:00+05:00'))", 2021),
            (
                "year(timestamp('2021-01-01T01:00:00+05:00'))"
                " == timestamp('2021-01-01T01:00:00+05:00').getFullYear()",
                True,
            ),
        ],
    )
    def test_year(self, engine: CelEngine, expression: str, expected: object) -> None:
        value = evaluate_one(engine, expression)
        assert value == expected
        assert type(value) is type(expected)

    def test_today(self, fixed_engine: CelEngine) -> None:
        assert evaluate_one(fixed_engine, "today_utc().year()") == 2024

    def test_is_an_int(self, engine: CelEngine) -> None:
        assert evaluate_one(engine, "year('1979-04-05') - 1") == 1978
        assert evaluate_one(engine, "type(year('1979-04-05')) == int") is True

    @pytest.mark.parametrize(
        ("argument", "detail"),
        [
            ("'1979-02-30'", "input is out of range"),
            ("'1979-13-01'", "input is out of range"),
            ("'0000-01-01'", "input is out of range"),
            ("'Bob'", "input contains invalid characters"),
            ("'1979-04'", "premature end of input"),
            ("'1979-04-05T00:00:00Z'", "trailing input"),
            ("1979", "expected a string or timestamp argument, got int"),
            ("duration('1h')", "expected a string or timestamp argument, got google.protobuf.Duration"),
        ],
    )
    def test_refusals_as_date(self, engine: CelEngine, argument: str, detail: str) -> None:
        assert error_of(engine, f"year({argument})") == _refusal("year", detail)
        if argument.startswith("'"):
            # The same rules as date(): the same refusal.
            assert error_of(engine, f"date({argument})") == _refusal("date", detail)


class TestBucket:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("bucket(47, 10)", 40),
            ("bucket(40, 10)", 40),
            ("bucket(0, 10)", 0),
            ("bucket(9, 10)", 0),
            ("bucket(-1, 10)", -10),
            ("bucket(-10, 10)", -10),
            ("bucket(-11, 10)", -20),
            ("bucket(47, 1)", 47),
            ("bucket(123456, 1000)", 123000),
            ("bucket(47, 10u)", 40),
            ("bucket(-1, 10u)", -10),
            ("bucket(47u, 10)", 40),
            ("bucket(47u, 10u)", 40),
            ("bucket(9223372036854775807, 10)", 9223372036854775800),
            ("bucket(18446744073709551615u, 10)", 18446744073709551610),
        ],
    )
    def test_integers_are_exact(self, engine: CelEngine, expression: str, expected: int) -> None:
        value = evaluate_one(engine, expression)
        assert value == expected
        assert type(value) is int

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("bucket(4.7, 1.0)", 4.0),
            ("bucket(4.7, 1)", 4.0),
            ("bucket(47, 2.5)", 45.0),
            ("bucket(47u, 2.5)", 45.0),
            ("bucket(-0.5, 1.0)", -1.0),
            ("bucket(0.3, 0.1)", 0.2),
            # The quotient is rounded before the floor: 1.0 / 0.1 is 10.0 in doubles.
            ("bucket(1.0, 0.1)", 1.0),
            ("bucket(72.4, 0.5)", 72.0),
        ],
    )
    def test_with_a_double_both_are_doubles(
        self, engine: CelEngine, expression: str, expected: float
    ) -> None:
        value = evaluate_one(engine, expression)
        assert value == expected
        assert type(value) is float

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("type(bucket(47, 10)) == int", True),
            ("type(bucket(47, 10u)) == int", True),
            ("type(bucket(47u, 10)) == uint", True),
            ("type(bucket(47u, 10u)) == uint", True),
            ("type(bucket(47, 1.0)) == double", True),
            ("type(bucket(47u, 1.0)) == double", True),
            ("bucket(47u, 10) + 1u", 41),
            ("bucket(47, 10) + 1", 41),
        ],
    )
    def test_the_result_keeps_the_number_type(
        self, engine: CelEngine, expression: str, expected: object
    ) -> None:
        assert evaluate_one(engine, expression) == expected

    def test_age_bucketing(self, fixed_engine: CelEngine) -> None:
        fields: dict[str, str | None] = {"dob": "1979-04-05"}
        assert evaluate_one(fixed_engine, "bucket(date(dob).age(), 10)", fields) == 40
        # The result is a uint, as age() is; it still compares with ints (numeric comparison).
        assert evaluate_one(fixed_engine, "bucket(date(dob).age(), 10) == 40", fields) is True
        assert evaluate_one(fixed_engine, "string(bucket(date(dob).age(), 10)) + 's'", fields) == "40s"

    @pytest.mark.parametrize(
        ("expression", "detail"),
        [
            ("bucket(47, 0)", "size must be greater than 0"),
            ("bucket(47, -10)", "size must be greater than 0"),
            ("bucket(47u, 0u)", "size must be greater than 0"),
            ("bucket(4.7, 0.0)", "size must be greater than 0"),
            ("bucket(4.7, -1.0)", "size must be greater than 0"),
            ("bucket(47, 0.0)", "size must be greater than 0"),
            ("bucket(double('nan'), 1.0)", "number and size must be finite"),
            ("bucket(double('inf'), 1.0)", "number and size must be finite"),
            ("bucket(1.0, double('inf'))", "number and size must be finite"),
            ("bucket(1.0, double('nan'))", "number and size must be finite"),
            ("bucket(1e308, 1e-308)", "result out of double range"),
            ("bucket(-9223372036854775808, 10)", "result out of int range"),
            ("bucket(-1, 18446744073709551615u)", "result out of int range"),
            ("bucket('47', 10)", "expected a number argument, got string"),
            ("bucket(true, 10)", "expected a number argument, got bool"),
            ("bucket(null, 10)", "expected a number argument, got null_type"),
            ("bucket(47, '10')", "expected a number argument for size, got string"),
            ("bucket(47, false)", "expected a number argument for size, got bool"),
        ],
    )
    def test_refusals(self, engine: CelEngine, expression: str, detail: str) -> None:
        assert error_of(engine, expression) == _refusal("bucket", detail)


def test_an_error_is_absorbed_like_any_other(engine: CelEngine) -> None:
    # Returned as error values, so || and && treat them as CEL errors.
    assert evaluate_one(engine, "true || mask('a', -1) == ''") is True
    assert evaluate_one(engine, "email_domain('x') == 'y' || true") is True


def test_timestamps_before_and_after_utc_midnight(engine: CelEngine) -> None:
    moment = datetime.datetime(2020, 12, 31, 23, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    expression = f"year(timestamp('{moment.isoformat()}'))"
    assert evaluate_one(engine, expression) == moment.year
    assert evaluate_one(engine, f"year(timestamp('{moment.astimezone(datetime.UTC).isoformat()}'))") == 2021
