"""The daemon's side of fault injection: one switch per fault of :data:`emulator.faults.catalogue.CATALOGUE`.

The supervisor hands ``{"op": "fault", ...}`` control requests to :class:`FaultInjector`,
which switches the faults of the catalogue on the running components, through the
public fault interfaces of :mod:`emulator.faults.hooks`. Requests arrive one at a time
(the control socket is served by one thread), so a switch never races another.
"""

from __future__ import annotations

from typing import Any

from emulator.faults.catalogue import CATALOGUE, Fault, FaultError, FaultHost


class FaultInjector:
    """Answers the ``fault`` control operation: ``list``, ``enable``, ``disable``, ``clear``."""

    def __init__(self, host: FaultHost) -> None:
        self.host = host
        self.faults: dict[str, Fault] = {name: kind(host) for name, kind in CATALOGUE.items()}
        #: Active faults and their parameters, in the order they were switched on.
        self.active: dict[str, dict[str, Any]] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        action = request.get("action")
        if action == "list":
            return {"catalogue": sorted(CATALOGUE), "active": dict(self.active)}
        if action == "clear":
            return {"cleared": self.clear()}
        name = request.get("name")
        fault = self.faults.get(str(name))
        if fault is None:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(self.faults)}")
        params = request.get("params") or {}
        if not isinstance(params, dict):
            raise FaultError("params must be an object")
        unknown = sorted(set(params) - set(fault.spec.params))
        if unknown:
            known = ", ".join(fault.spec.params) or "none"
            raise FaultError(f"{fault.spec.name} has no parameter {', '.join(unknown)} (known: {known})")
        if action == "enable":
            for superseded in fault.supersedes:
                if superseded in self.active:
                    self.faults[superseded].release()
            result = fault.enable(params)
            for superseded in fault.supersedes:
                self.active.pop(superseded, None)
            if not fault.spec.one_shot:
                self.active.pop(fault.spec.name, None)
                self.active[fault.spec.name] = dict(params)
            return {"name": fault.spec.name, "result": result, "active": dict(self.active)}
        if action == "disable":
            result = fault.disable() if fault.spec.name in self.active else {}
            self.active.pop(fault.spec.name, None)
            return {"name": fault.spec.name, "result": result, "active": dict(self.active)}
        raise FaultError(f"unknown fault action {action!r}")

    def clear(self) -> list[str]:
        cleared = []
        for name in reversed(list(self.active)):
            self.faults[name].disable()
            self.active.pop(name, None)
            cleared.append(name)
        return cleared

    def release(self) -> None:
        for name in list(self.active):
            self.faults[name].release()
