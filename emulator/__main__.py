"""``python -m emulator`` is ``vault-emulator``."""

from __future__ import annotations

import sys

from emulator.tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
