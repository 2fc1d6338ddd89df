"""Setting up a machine (a developer's or CI's) for the emulator's heavier parts.

* :mod:`.apt` and :mod:`.tools`: Debian packages for the tools the emulator uses
  (Docker engine, JDK, Chromium, Node/npm, debootstrap), installed only when missing;
* :mod:`.dockerd`: a Docker engine of the emulator's own, with its socket and data
  under the state directory, when none is running;
* :mod:`.base_image`: a Debian base image built locally with debootstrap, because no
  container registry can be reached.

Command line: ``python -m emulator.host.system --help``.
"""

from emulator.host.system.errors import SystemSetupError

__all__ = ["SystemSetupError"]
