"""Where a sweep's runs execute: Ray tasks (a local Ray instance, or the cluster named by
``RAY_ADDRESS``), or in this process one after another (tests, debugging). One interface:
``submit`` a function with its resource request, ``wait`` for the next finished handles,
``result`` of a handle (raises what the task raised), ``cancel``, ``close``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from badseg.sweep.spec import Resources


START_ATTEMPTS = 3


class ExecutorError(RuntimeError):
    """The executor could not be started (e.g. Ray did not come up)."""


class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], resources: Resources) -> Any: ...

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]: ...

    def result(self, handle: Any) -> Any: ...

    def cancel(self, handle: Any) -> None: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class _Local:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: bool = False
    value: Any = None
    error: BaseException | None = None


class LocalExecutor:
    """Runs each submitted task in this process when ``wait`` is called, oldest first."""

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], resources: Resources) -> _Local:
        return _Local(fn, args)

    def wait(self, handles: Sequence[_Local], timeout: float) -> list[_Local]:
        ready = [h for h in handles if h.done]
        if ready or not handles:
            return ready
        h = handles[0]
        try:
            h.value = h.fn(*h.args)
        except Exception as e:  # noqa: BLE001 - handed back by result(), like a remote task's error
            h.error = e
        h.done = True
        return [h]

    def result(self, handle: _Local) -> Any:
        if handle.error is not None:
            raise handle.error
        return handle.value

    def cancel(self, handle: _Local) -> None:
        handle.done = True
        handle.error = KeyboardInterrupt()

    def close(self) -> None:
        pass


class RayExecutor:
    """Ray tasks, each asking for its CPUs and GPUs.

    Connects to the cluster in ``RAY_ADDRESS`` when it is set, otherwise starts a local Ray
    instance with ``num_cpus`` / ``num_gpus`` (None: what the machine has). Workers inherit this
    process's environment (``PYTHONPATH`` included), so they import the same badseg.
    """

    def __init__(self, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
        import ray

        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            # Ray lowers its workers' priority by 15 by default; keep the driver's (nice the command instead).
            os.environ.setdefault("RAY_worker_niceness", "0")
            env = {k: os.environ[k] for k in ("PYTHONPATH", "HF_HUB_OFFLINE", "MPLBACKEND") if k in os.environ}
            kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
            if os.environ.get("RAY_ADDRESS"):
                kwargs["address"] = os.environ["RAY_ADDRESS"]
            else:
                kwargs.update(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
            self._init(kwargs)
        self._remote: dict[Callable[..., Any], Any] = {}

    def _init(self, kwargs: dict[str, Any]) -> None:
        """``ray.init``, tried ``START_ATTEMPTS`` times: a local Ray instance gives its processes a
        fixed 30 s to register, which an overloaded machine can miss."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._ray.init(log_to_driver=False, **kwargs)
                return
            except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception on a start-up timeout
                self._ray.shutdown()
                if attempt == START_ATTEMPTS:
                    raise ExecutorError(f"Ray did not start ({e}); try again, or run with --local") from None

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], resources: Resources) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(max_retries=0)(fn)
        return self._remote[fn].options(num_cpus=resources.cpus, num_gpus=resources.gpus).remote(*args)

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        if not handles:
            return []
        ready, _ = self._ray.wait(list(handles), num_returns=1, timeout=timeout)
        return ready

    def result(self, handle: Any) -> Any:
        return self._ray.get(handle)

    def cancel(self, handle: Any) -> None:
        self._ray.cancel(handle, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
