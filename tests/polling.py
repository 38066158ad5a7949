"""Waiting on a real process from a test: poll a condition until it holds or time runs out."""

from __future__ import annotations

import time
from typing import Callable


def wait_for(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll `predicate()` until true or `timeout_s` passes; its last answer, as a bool."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
