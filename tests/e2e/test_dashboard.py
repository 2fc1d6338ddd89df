"""The dashboard in a real browser (headless Chromium): it loads, shows the attested PCRs beside
the key policy's, and its switch turns a fault on (the API then answers as the fault table says)
and off again.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fds 3 and 4,
NUL-terminated JSON messages), so no WebSocket client or browser driver is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.chromium import CHROMIUM, headless_command, temporary_profile
from e2e.faults.support import PII, documented, expect_error
from emulator.daemon.control import control_request
from emulator.daemon.state import EmulatorState
from emulator.faults.catalogue import FaultController
from emulator.tools.client import VaultClient
from emulator.tools.demo import CHANGED_CODE

#: Bound of every wait for the page (each is a poll of the DOM).
PAGE_WAIT = 30.0
KEY_PAIR = "GenerateDataKeyPairWithoutPlaintext"
#: Values found nowhere else on the page (ARNs hold digits, hex PCRs letters a-f).
NAMES = {"first_name": "Zenobia", "last_name": "Quackenbush"}


class Browser:
    """One headless Chromium, one page, commands over the DevTools pipe."""

    def __init__(self, process: subprocess.Popen[bytes], commands: int, replies: int) -> None:
        self.process = process
        self.commands = commands
        self.replies = replies
        self.buffer = b""
        self.next_id = 0
        self.session = ""

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30.0) -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise AssertionError(f"{method}: no reply within {timeout} s")

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.replies], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError("the browser stopped answering")
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                raise AssertionError("the browser closed its pipe")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def attach(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = PAGE_WAIT) -> Any:
        """The value of ``expression`` once it is truthy (polled; bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"{expression} stayed {value!r} for {timeout} s")


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    assert CHROMIUM is not None
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()

    def pipes_at_3_and_4() -> None:
        # Above 10 first, so that moving one pipe end to 3 or 4 cannot overwrite the other.
        commands = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
        replies = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
        os.dup2(commands, 3)
        os.dup2(replies, 4)

    with temporary_profile() as profile:
        process = subprocess.Popen(
            headless_command(profile, "--remote-debugging-pipe", "about:blank"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=pipes_at_3_and_4,
        )
        os.close(commands_read)
        os.close(replies_write)
        try:
            yield Browser(process, commands_write, replies_read)
        finally:
            with contextlib.suppress(OSError):
                os.close(commands_write)
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            os.close(replies_read)


def dashboard_url(stack: EmulatorState) -> str:
    return stack.api_url.rsplit("/", 1)[0] + "/_emulator/"


def switch(browser: Browser, fault: str, params: str = "") -> str:
    """Set the fault's parameters, click its switch, wait for the page to report the daemon's answer."""
    row = f"document.querySelector('#faults tr[data-fault=\"{fault}\"]')"
    browser.wait_for(f"{row} !== null")
    browser.evaluate(f"{row}.querySelector('input.params').value = {json.dumps(params)}")
    browser.evaluate("document.getElementById('faults-status').textContent = ''")
    browser.evaluate(f"document.getElementById('fault-{fault}').click()")
    status: str = browser.wait_for(
        f"(t => t.startsWith('{fault} is ') || t.startsWith('{fault}: ') ? t : '')"
        "(document.getElementById('faults-status').textContent)"
    )
    return status


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_the_dashboard_shows_the_emulator_and_switches_a_fault(
    stack: EmulatorState, client: VaultClient
) -> None:
    faults = FaultController(stack)
    with chromium() as browser:
        browser.attach(dashboard_url(stack))
        # The components, with their health.
        healthy = browser.wait_for(
            "(rows => rows.length > 10 && rows.every(r => r.cells[1].textContent === 'healthy')"
            " ? rows.map(r => r.dataset.component) : null)"
            "([...document.querySelectorAll('#components tbody tr')])"
        )
        assert {"kms-front", "enclave", "parent", "gateway"} <= set(healthy)
        # PCR0 as the NSM attests it, beside the key policy's, which admits this enclave.
        pcr0 = browser.wait_for(
            "(r => r && r.cells[1].textContent.length === 96 ? [...r.cells].map(c => c.textContent) : null)"
            "(document.querySelector('#pcrs tr[data-pcr=\"PCR0\"]'))"
        )
        assert pcr0 == ["PCR0", stack.facts["running_pcr0"], stack.facts["pcr0"], "match"]
        summary = browser.evaluate("document.getElementById('pcrs-summary').textContent")
        assert "admitted by key policy statement AllowDecryptByEnclave" in summary

        try:
            status = switch(browser, "kms-throttle", f"operation={KEY_PAIR}")
            assert status == "kms-throttle is on; active: kms-throttle", status
            assert faults.active() == {"kms-throttle": {"operation": KEY_PAIR}}
            assert browser.evaluate("document.getElementById('fault-kms-throttle').checked") is True
            # The API answers as the fault table says.
            expect_error(lambda: client.create(PII), 502, "KeyGenerationFailed")
            documented("kms-throttle", 502, "KeyGenerationFailed")
        finally:
            status = switch(browser, "kms-throttle")
        assert status == "kms-throttle is off; active: none", status
        assert faults.active() == {}
        vault_id = client.create({**PII, **NAMES})

        # The vault's audit trail: field names, never values; and the KMS front's decisions with reasons.
        browser.evaluate(f"document.getElementById('vault-id').value = {json.dumps(vault_id)}")
        browser.evaluate("document.getElementById('audit-form').requestSubmit()")
        events = browser.wait_for(
            "(rows => rows.length ? rows.map(r => [r.cells[1].textContent, r.cells[3].textContent]) : null)"
            "([...document.querySelectorAll('#audit tbody tr')])"
        )
        assert events[0][0] == "CreateVault" and "first_name" in events[0][1], events
        page = browser.evaluate("document.body.innerText")
        assert all(value not in page for value in NAMES.values())
        decisions = browser.wait_for(
            "(rows => rows.some(r => r.cells[4].textContent === 'allowed')"
            " ? rows.map(r => [1, 4, 5].map(i => r.cells[i].textContent)) : null)"
            "([...document.querySelectorAll('#decisions tbody tr')])"
        )
        allowed = [d for d in decisions if d[1] == "allowed"]
        assert any(d[0] == KEY_PAIR and d[2] for d in allowed), decisions
        client.delete(vault_id)


def relaunch(stack: EmulatorState, overrides: dict[str, str]) -> dict[str, str]:
    reply = control_request(stack.layout, {"op": "relaunch-enclave", "overrides": overrides})
    assert reply.get("ok"), reply
    result: dict[str, str] = reply["result"]
    return result


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_an_enclave_of_changed_code_shows_its_pcr0_beside_the_policy_s(stack: EmulatorState) -> None:
    row = "document.querySelector('#pcrs tr[data-pcr=\"PCR0\"]')"
    with chromium() as browser:
        browser.attach(dashboard_url(stack))
        try:
            launched = relaunch(stack, CHANGED_CODE)
            assert launched["pcr0"] != launched["policy_pcr0"]
            cells = browser.wait_for(
                "(r => r && r.cells[3].textContent === 'MISMATCH'"
                f" ? [...r.cells].map(c => c.textContent) : null)({row})"
            )
            assert cells == ["PCR0", launched["pcr0"], launched["policy_pcr0"], "MISMATCH"]
            summary = browser.evaluate("document.getElementById('pcrs-summary').textContent")
            assert "no decrypt statement admits this enclave" in summary, summary
        finally:
            restored = relaunch(stack, {})
        assert restored["pcr0"] == restored["policy_pcr0"]
        browser.wait_for(f"{row}.cells[3].textContent === 'match'")
