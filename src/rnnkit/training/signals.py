"""A stop on SIGINT/SIGTERM between two steps, so the state saved on the way out is whole."""

from __future__ import annotations

import signal
import threading

from ..errors import RnnkitError


class Interrupted(RnnkitError):
    exit_code = 130
    same_on_every_rank = True  # every rank stops at the same step: rank 0 alone says so


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag the loop checks between steps, so the state
    saved on the way out is never half-updated. A second Ctrl-C stops at once."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
