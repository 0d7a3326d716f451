"""A recording fake of a plugin's `kernel.py` (STYLE §6.6: "the kernel is a parameter"): every
public function of the module is replaced, for the length of a `with` block, by a recorder
that notes (name, arguments) and returns a configured result. Owns the recorder; what a test
concludes from the calls is the test's (network_contract.py has one).

    with RecordingModule(kernel, results={"link_mtu": 1500}) as recording:
        driver.teardown_net(container=container, record=None)
    names = [call.name for call in recording.calls]

Honest only for a plugin whose kernel.py is the one module that touches the kernel, and whose
other modules call it as `kernel.name(...)` at call time (a `from kernel import name` keeps
the real function). A call without a configured result returns a `StandIn`: falsy, empty, a
context manager of itself, whose method calls are recorded in turn as "<name>.<method>"
(so a transaction object such as `with kernel.iptables() as ipt: ipt.delete(...)` is seen
whole). A function passed to a recorded call is code, not a name: it is left out of the
call's arguments and run with the call's stand-in (so `kernel.combined(change)`, which runs
`change(ipt)`, is seen whole as "combined.<method>" calls). A configured result is returned
as it is, to every such call.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Self


@dataclass(frozen=True)
class Call:
    name: str  # "delete_link", or "iptables.delete" for a method of what `iptables()` returned
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def text(self) -> str:
        """The arguments as one string (repr of each): what the call names."""
        return " ".join([repr(a) for a in self.args]
                        + [f"{k}={v!r}" for k, v in self.kwargs.items()])


class StandIn:
    """What a recorded call returns when no result was configured for it."""

    def __init__(self, recording: RecordingModule, name: str) -> None:
        self._recording = recording
        self._name = name

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._recording.recorder(f"{self._name}.{attr}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> bool:
        return False

    def __bool__(self) -> bool:
        return False

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<stand-in for {self._name}()>"


class RecordingModule:
    """Replace the public functions of `module` (defined in it, not imported into it) with
    recorders while the `with` block runs; `calls` lists what was called, in order.

    results: call name ("link_mtu", or "iptables.chains" for a method of what a call
    returned) -> the value such a call returns.
    """

    def __init__(self, module: ModuleType, results: dict[str, Any] | None = None) -> None:
        self.module = module
        self.results = dict(results or {})
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._saved: dict[str, Any] = {}

    def function_names(self) -> list[str]:
        return sorted(name for name, value in vars(self.module).items()
                      if not name.startswith("_") and inspect.isfunction(value)
                      and value.__module__ == self.module.__name__)

    def recorder(self, name: str) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            work = [a for a in args if inspect.isfunction(a)]
            named = tuple(a for a in args if not inspect.isfunction(a))
            with self._lock:
                self.calls.append(Call(name, named, kwargs))
            for function in work:
                function(StandIn(self, name))
            if name in self.results:
                return self.results[name]
            return StandIn(self, name)

        record.__name__ = name
        return record

    def __enter__(self) -> Self:
        for name in self.function_names():
            self._saved[name] = getattr(self.module, name)
            setattr(self.module, name, self.recorder(name))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, original in self._saved.items():
            setattr(self.module, name, original)
        self._saved.clear()
