"""``python -m vault.parent``: the same as the ``vault-parent`` command."""

import sys

from vault.parent.cli import main

sys.exit(main())
