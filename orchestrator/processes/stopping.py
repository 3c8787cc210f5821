"""Stop signals that come while a process is still starting: Ctrl-C at any moment.

`journeys dev` takes seconds to start: loading its libraries, validating the journeys
(every message in every locale), starting the Temporal dev server, connecting to it.
Ctrl-C in a terminal (SIGINT to the whole foreground group), SIGTERM or SIGHUP in any
of those must end the start where it is, quietly: no traceback, nothing left running,
and no write to the store cut in half.

- Blocking work (imports, validation) is interrupted where it is: the signal raises
  `StopRequested`, as Ctrl-C raises KeyboardInterrupt, except inside `held()` (writes),
  where it is raised when the block ends.
- Once the event loop runs, `attach(stop)` hands the signals over to it: they set the
  `stop` event, and each wait of the start (the server coming up, connecting) is raced
  against it with `unless_stopped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Iterator
from types import FrameType
from typing import TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequested(BaseException):
    """A stop signal arrived before the process was serving.

    A BaseException, as KeyboardInterrupt is: no `except Exception` on its way (a
    message that fails to render is a validation problem) may take it for an error.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stops:
    """The stop signals of one process, from its first line of start-up to its exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._held = 0
        self._raised = False

    @classmethod
    def install(cls) -> Stops:
        """Take SIGINT, SIGTERM and SIGHUP now (call it before the slow imports)."""
        stops = cls()
        for sig in STOP_SIGNALS:
            signal.signal(sig, stops._on_signal)
        return stops

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self._held or self._raised:
            return  # raised when the held block ends, or already on its way
        self._raised = True
        raise StopRequested(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A block no signal interrupts (a write): a stop asked meanwhile is raised after it."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held and self.signum is not None and not self._raised:
            self._raised = True
            raise StopRequested(self.signum)

    @contextlib.contextmanager
    def to_loop(self) -> Iterator[None]:
        """Around `asyncio.run`: a signal is only recorded until `attach` hands the signals
        to the loop, and again after the loop has ended (closing it restores the default
        handlers, and SIGTERM's would end the process before it has cleaned up)."""
        self._held += 1  # for good: nothing is raised from here to the exit
        try:
            yield
        finally:
            for sig in STOP_SIGNALS:
                signal.signal(sig, self._on_signal)

    def attach(self, stop: asyncio.Event) -> None:
        """From now on the running loop takes the signals: each sets `stop`; a signal
        that came before (while held) sets it at once."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_loop_signal, sig, stop)
        if self.signum is not None:
            stop.set()

    def _on_loop_signal(self, signum: int, stop: asyncio.Event) -> None:
        if self.signum is None:
            self.signum = signum
        stop.set()

    def stopped(self) -> StopRequested:
        """The exception that ends a start asked to stop."""
        self._raised = True
        return StopRequested(self.signum or signal.SIGINT)


async def unless_stopped(stop: asyncio.Event, stops: Stops, step: Awaitable[T]) -> T:
    """`step`'s result, or StopRequested as soon as `stop` is set (`step` is cancelled)."""
    task = asyncio.ensure_future(step)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # its own clean-up runs now
    raise stops.stopped()
