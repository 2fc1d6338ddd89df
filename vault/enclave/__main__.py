"""``python -m vault.enclave``: the enclave process.

Reads :class:`~vault.enclave.config.EnclaveConfig` from the environment, logs JSON lines
to stderr, and serves decrypt requests until SIGTERM or SIGINT. Every request must carry
the API's authorization (decision D16); nothing in the environment can turn that off,
since the environment is the parent's to set.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from vault.common.authorization import AuthorizationVerifier
from vault.common.logs import configure_logging
from vault.enclave.config import ConfigError, EnclaveConfig
from vault.enclave.handler import RequestHandler, load_default_engine
from vault.enclave.server import EnclaveServer

logger = logging.getLogger("vault.enclave")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the enclave server; returns the process exit status."""
    del argv  # configuration comes from the environment only
    configure_logging("enclave")
    try:
        config = EnclaveConfig.from_env()
    except ConfigError as exc:
        logger.error("invalid configuration", extra={"fields": {"error": str(exc)}})
        return 2
    configure_logging("enclave", config.log_level)

    # Imported here so that this module imports without the production KMS stack
    # (botocore) installed, as tests that run the enclave with a local key decryptor do.
    from vault.enclave.kms_decryptor import KmsKeyDecryptor

    engine = load_default_engine()
    if engine is None:
        logger.warning("CEL engine not installed: requests with expressions will be refused")

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("stopping", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    try:
        decryptor = KmsKeyDecryptor.from_env()
        decryptor.warm_up()
    except Exception as exc:  # noqa: BLE001 - any startup failure ends the process with a log line
        logger.error("cannot set up the key decryptor", extra={"fields": {"exception": type(exc).__name__}})
        return 1

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with decryptor:
            # One verifier for the process: its replay cache spans every connection.
            handler = RequestHandler(decryptor, engine, authorizer=AuthorizationVerifier())
            server = EnclaveServer(config.transport.create(), handler, config.server)
            try:
                server.start()
            except OSError as exc:
                logger.error(
                    "cannot listen", extra={"fields": {"address": server.address, "error": str(exc)}}
                )
                return 1
            try:
                # The main thread only waits, so signal handlers run promptly.
                while not stop.wait(1.0):
                    pass
            finally:
                server.shutdown()
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
