"""Start components in dependency order, in parallel where the order allows.

A component names the components it needs; it starts as soon as all of them are up,
on a small thread pool, so independent chains (the AWS backend, assembling and
measuring the enclave image, the IMDS server, the gateway's Lambda cold start)
overlap. The first failure stops the launch: no new component starts, the ones
still starting finish, and the caller stops everything that did start, in reverse.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass


class LaunchError(RuntimeError):
    def __init__(self, component: str, error: BaseException) -> None:
        super().__init__(f"{component}: {error}")
        self.component = component
        self.error = error
        #: Components that did start, in order; the caller stops them.
        self.started: list[str] = []


@dataclass(frozen=True)
class Node:
    name: str
    needs: tuple[str, ...]
    start: Callable[[], None]


def check_graph(nodes: Sequence[Node]) -> None:
    names = [node.name for node in nodes]
    if len(set(names)) != len(names):
        raise ValueError("component names must be unique")
    known = set(names)
    for node in nodes:
        missing = set(node.needs) - known
        if missing:
            raise ValueError(f"{node.name} needs unknown components {sorted(missing)}")
    # Kahn's algorithm: a cycle leaves nodes that never become ready.
    remaining = {node.name: set(node.needs) for node in nodes}
    while remaining:
        ready = [name for name, needs in remaining.items() if not needs]
        if not ready:
            raise ValueError(f"dependency cycle among {sorted(remaining)}")
        for name in ready:
            del remaining[name]
        for needs in remaining.values():
            needs.difference_update(ready)


def launch(
    nodes: Sequence[Node],
    *,
    workers: int = 6,
    on_started: Callable[[str, float], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Start every node; return names in the order they finished starting.

    Raises :class:`LaunchError` for the first node that failed; nodes started before
    that are in ``LaunchError.started`` for the caller to stop.
    """
    check_graph(nodes)
    by_name: Mapping[str, Node] = {node.name: node for node in nodes}
    done: list[str] = []
    pending = dict(by_name)
    running: dict[Future[float], str] = {}
    failure: LaunchError | None = None

    def timed(node: Node) -> float:
        began = time.monotonic()
        node.start()
        return time.monotonic() - began

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="start") as pool:
        while pending or running:
            if failure is None and not (cancel is not None and cancel.is_set()):
                for name, node in list(pending.items()):
                    if all(need in done for need in node.needs):
                        running[pool.submit(timed, node)] = name
                        del pending[name]
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or LaunchError(name, error)
                    continue
                done.append(name)
                if on_started is not None:
                    on_started(name, future.result())
    if failure is not None:
        failure.started = done
        raise failure
    if cancel is not None and cancel.is_set():
        error = LaunchError("emulator", RuntimeError("startup was cancelled"))
        error.started = done
        raise error
    return done
