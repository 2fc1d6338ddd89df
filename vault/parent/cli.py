"""``vault-parent``: the decrypt service on the Nitro Enclaves parent instance (spec 3.1)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from vault.common.logs import configure_logging
from vault.parent.config import ConfigError, parse_config
from vault.parent.server import serve

log = logging.getLogger("vault.parent")

EXIT_USAGE = 2
EXIT_FAILURE = 1
#: The IMDS client's HTTP stack; at DEBUG it traces every exchange with the metadata
#: service (the session-token request included), which has no place in service logs.
HTTP_CLIENT_LOGGERS = ("httpx", "httpcore")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"vault-parent: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging("parent", config.log_level)
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    log.info("starting", extra={"fields": config.describe()})
    try:
        serve(config)
    except ConfigError as exc:
        log.error("invalid configuration", extra={"fields": {"error": str(exc)}})
        return EXIT_USAGE
    except OSError as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        return EXIT_FAILURE
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
