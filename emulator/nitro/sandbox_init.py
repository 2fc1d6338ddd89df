"""PID 1 of the enclave's namespace sandbox (the role Nitro's own init plays in an EIF).

Run with ``python -I sandbox_init.py [--hostname NAME] -- PROGRAM [ARGS...]`` inside
fresh namespaces. It brings up the loopback interface (a new network namespace has
only ``lo``, and it starts down; in-enclave loopback bridges need it), starts the
program, forwards termination signals to it (the kernel delivers to a namespace's
PID 1 only the signals it has handlers for), reaps every orphan, and exits with the
program's status. Standard library only: it runs before anything else is importable.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFF_RUNNING = 0x40


def bring_up_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        if flags & _IFF_UP:
            return
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP | _IFF_RUNNING))


def main(argv: list[str]) -> int:
    hostname = None
    if argv[:1] == ["--hostname"]:
        hostname, argv = argv[1], argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        print("usage: sandbox_init.py [--hostname NAME] -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    program = argv[1:]
    bring_up_loopback()
    if hostname:
        socket.sethostname(hostname)
    child = subprocess.Popen(program)  # inherits the (already restricted) environment

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child.pid:
            status = os.waitstatus_to_exitcode(wait_status)
            child.returncode = status
            # Whatever the program left behind dies with it, as in a stopped enclave;
            # kill(-1) from a namespace's PID 1 reaches only that namespace.
            if os.getpid() == 1:
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
