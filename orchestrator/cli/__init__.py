"""The `journeys` command line: one click group, its commands and their tables."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def _interrupted_while_loading(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(130)  # the shell's code for Ctrl-C, without a traceback from an import


# Loading the command takes a moment (click, pydantic); Ctrl-C meanwhile exits quietly.
# The commands take over from there (click's "Aborted!", `journeys dev`'s clean stop).
_quiet = (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
)
if _quiet:
    signal.signal(signal.SIGINT, _interrupted_while_loading)
try:
    from .main import main
finally:
    if _quiet:
        signal.signal(signal.SIGINT, signal.default_int_handler)

__all__ = ["main"]
