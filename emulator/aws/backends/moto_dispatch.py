"""moto's request dispatch without a directory scan per request.

moto's WSGI dispatcher asks ``moto.backends.list_of_moto_modules()`` on every request,
under its global lock, whether the inferred host names a backend module; that generator
lists moto's package directory and stats each entry (~200) every time -- measured at
~1.3 ms of CPU per vault decrypt (three backend calls). The package directory does not
change while the process runs, so :func:`install` answers from one scan.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable

import moto.backends

_install_lock = threading.Lock()
_MARK = "_nitro_vault_cached"


def install() -> None:
    """Replace ``moto.backends.list_of_moto_modules`` by a cached scan; idempotent."""
    with _install_lock:
        current = moto.backends.list_of_moto_modules
        if getattr(current, _MARK, False):
            return
        modules = tuple(current())

        # functools.wraps keeps moto's function as __wrapped__, which the contract test reads.
        @functools.wraps(current)
        def list_of_moto_modules() -> Iterable[str]:
            return modules

        setattr(list_of_moto_modules, _MARK, True)
        moto.backends.list_of_moto_modules = list_of_moto_modules
