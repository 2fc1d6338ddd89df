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


def stop_all(
    started: Sequence[str],
    needs: Mapping[str, Sequence[str]],
    stop: Callable[[str], None],
    *,
    workers: int = 6,
) -> list[str]:
    """Stop every started component, each once nothing still running needs it; in parallel.

    The reverse of :func:`launch`: independent chains stop side by side, so ``down``
    costs the longest chain rather than the sum. ``stop`` must not raise (the caller
    logs its failures). Returns names in the order they finished stopping.
    """
    remaining = set(started)
    # Who needs each component, among those started.
    dependents: dict[str, set[str]] = {name: set() for name in remaining}
    for name in remaining:
        for need in needs.get(name, ()):
            if need in dependents:
                dependents[need].add(name)
    stopped: list[str] = []
    running: dict[Future[None], str] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stop") as pool:
        while remaining or running:
            in_flight = set(running.values())
            for name in sorted(remaining - in_flight):
                if not dependents[name] & (remaining | in_flight):
                    running[pool.submit(stop, name)] = name
            remaining -= set(running.values())
            if not running:
                # Only a cycle leaves components nobody can stop first; stop them in order.
                for name in [n for n in reversed(started) if n in remaining]:
                    stop(name)
                    stopped.append(name)
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                stopped.append(running.pop(future))
    return stopped
