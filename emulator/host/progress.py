"""Progress of the slow steps (installing packages, starting dockerd, building images).

A step is reported where it happens, with :func:`step`; where the report goes is chosen
by the program that runs it, with :func:`set_sink`, as logging chooses its handlers:
``python -m emulator.host.system`` prints to stderr (:class:`ProgressPrinter`), the
emulator daemon appends to its state directory's progress file, which ``vault-emulator
up`` relays to its stderr. Without a sink a step costs nothing but two clock reads.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TextIO

Outcome = Literal["begin", "done", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("begin", "done", "failed")


@dataclass(frozen=True)
class StepEvent:
    """One step starting (``begin``) or ending (``done``/``failed``) after ``seconds``."""

    step: str
    outcome: Outcome
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> StepEvent | None:
        """The event of one progress-file line; ``None`` for a torn or foreign line."""
        try:
            data = json.loads(line)
            step, outcome, seconds = data["step"], data["outcome"], float(data["seconds"])
        except (ValueError, KeyError, TypeError):
            return None
        for known in OUTCOMES:
            if known == outcome and isinstance(step, str):
                return cls(step, known, seconds)
        return None


Sink = Callable[[StepEvent], None]

_lock = threading.Lock()
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> Sink | None:
    """Send every step's events to ``sink`` (``None``: nowhere); returns the previous sink."""
    global _sink
    with _lock:
        previous, _sink = _sink, sink
    return previous


def _emit(event: StepEvent) -> None:
    with _lock:
        sink = _sink
    if sink is not None:
        # A progress line must never break the work it reports on.
        try:
            sink(event)
        except (OSError, ValueError):
            pass


@contextmanager
def step(name: str) -> Iterator[None]:
    """Report ``name`` as begun now and as done (or failed) when the block ends."""
    began = time.monotonic()
    _emit(StepEvent(name, "begin"))
    try:
        yield
    except BaseException:
        _emit(StepEvent(name, "failed", time.monotonic() - began))
        raise
    _emit(StepEvent(name, "done", time.monotonic() - began))


class ProgressFile:
    """A sink appending one JSON line per event to ``path`` (the daemon's progress file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: StepEvent) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(event.to_json() + "\n")


class ProgressFileReader:
    """Reads the events appended to a progress file since the last call (whole lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def new_events(self) -> list[StepEvent]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        complete, _, _ = data.rpartition(b"\n")
        if not complete:
            return []
        self._offset += len(complete) + 1
        events = (StepEvent.from_json(line) for line in complete.decode("utf-8", "replace").splitlines())
        return [event for event in events if event is not None]


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class ProgressPrinter:
    """Prints step events: plain lines (a log, CI), or one live line on a terminal.

    Plain: a line when a step begins, a line with its elapsed time when it ends, and
    a "still running" line every ``heartbeat`` seconds in between. Terminal: the running
    step on one line, its seconds counting, replaced by the step's final line.
    Use as a context manager: the terminal's ticker stops on exit.
    """

    TICK_SECONDS = 0.5

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None, heartbeat: float = 30.0):
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        #: Running steps by name, with when they began and when a line last said so.
        self._running: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._live_shown = False

    def __enter__(self) -> ProgressPrinter:
        self._ticker = threading.Thread(target=self._tick_loop, name="progress", daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self._lock:
            self._clear_live()

    def __call__(self, event: StepEvent) -> None:
        now = time.monotonic()
        with self._lock:
            if event.outcome == "begin":
                self._running[event.step] = (now, now)
                if not self.live:
                    self._write(f"  … {event.step}")
                else:
                    self._draw_live(now)
                return
            self._running.pop(event.step, None)
            mark = "✓" if event.outcome == "done" else "✗ failed:"
            self._clear_live()
            self._write(f"  {mark} {event.step} ({format_seconds(event.seconds)})")
            if self.live:
                self._draw_live(now)

    def line(self, text: str) -> None:
        """A line of its own (a component started), kept apart from the live line."""
        with self._lock:
            self._clear_live()
            self._write(text)
            if self.live:
                self._draw_live(time.monotonic())

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.TICK_SECONDS):
            now = time.monotonic()
            with self._lock:
                if self.live:
                    self._draw_live(now)
                    continue
                for name, (began, said) in list(self._running.items()):
                    if now - said >= self.heartbeat:
                        self._running[name] = (began, now)
                        self._write(f"  … {name}: still running after {format_seconds(now - began)}")

    def _draw_live(self, now: float) -> None:
        if not self._running:
            self._clear_live()
            return
        name, (began, _) = next(iter(self._running.items()))
        others = f" (+{len(self._running) - 1} more)" if len(self._running) > 1 else ""
        self.stream.write(f"\r\033[K  … {name}{others} {format_seconds(now - began)}")
        self.stream.flush()
        self._live_shown = True

    def _clear_live(self) -> None:
        if self._live_shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._live_shown = False

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
