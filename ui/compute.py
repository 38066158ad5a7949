"""Torch work shared by every session of one server: the thread policy and the limit on forwards.

One Streamlit server is one process: every browser session runs its script in a thread of it,
and all of them share the machine's cores. Two rules keep them from slowing each other to a crawl:

- The thread policy: torch's intra-op threads per forward (`torch.set_num_threads`, process-wide)
  and the number of forwards allowed at once, so that threads x forwards <= the cores this process
  may use (`os.sched_getaffinity`). One thread per forward and one forward per core is the default:
  on the 2-core machine of BENCHMARKS.md ("Pages on the CPU") a lone page was no slower with one
  thread than with two, and sessions under load were faster. `DETECTOR_TORCH_THREADS=N` gives each
  forward N threads (and cores // N forwards at once).
- The gate: a process-wide semaphore with that many slots. A session whose model work finds
  every slot taken waits, and its page says it is queued and behind how many runs, rather than
  every session's forward sharing the cores and all of them finishing late.

Only work that is not cached yet passes the gate: a result another session already computed
(the stage of the same model and image, say) comes back without waiting.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

import streamlit as st
import torch

from detector.wording import counted

THREADS_ENV = "DETECTOR_TORCH_THREADS"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPolicy:
    """How torch work shares the cores: threads per forward x forwards at once <= cores."""

    cores: int
    threads_per_forward: int
    concurrent_forwards: int

    @classmethod
    def for_cores(cls, cores: int, threads: int | None = None) -> ThreadPolicy:
        threads = max(1, min(int(threads or 1), cores))
        return cls(cores, threads, max(1, cores // threads))

    def describe(self) -> str:
        return (f"{counted(self.concurrent_forwards, 'model run')} at once, {counted(self.threads_per_forward, 'thread')} each, "
                f"on {counted(self.cores, 'core')}")


def thread_policy() -> ThreadPolicy:
    """The policy from the cores available and $DETECTOR_TORCH_THREADS (default 1 thread per forward)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    threads = int(raw) if raw.isdigit() and int(raw) > 0 else None
    return ThreadPolicy.for_cores(available_cores(), threads)


class ForwardGate:
    """A process-wide limit on concurrent forwards; re-entrant within one thread."""

    def __init__(self, slots: int):
        self.slots = slots
        self._sem = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self._local = threading.local()
        self.running = 0
        self.waiting = 0

    def holding(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    @contextlib.contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None, poll_s: float = 0.25) -> Iterator[None]:
        """Hold a slot for the block; while none is free, call `on_wait(runs ahead)` every `poll_s`."""
        if self.holding():  # this thread already holds one (a cached call inside a gated block)
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        if not self._sem.acquire(blocking=False):
            with self._lock:
                self.waiting += 1
            try:
                while True:
                    if on_wait is not None:
                        with self._lock:
                            ahead = self.running + self.waiting - 1
                        on_wait(ahead)
                    if self._sem.acquire(timeout=poll_s):
                        break
            finally:
                with self._lock:
                    self.waiting -= 1
        with self._lock:
            self.running += 1
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._lock:
                self.running -= 1
            self._sem.release()


@st.cache_resource(show_spinner=False)
def _process_state() -> tuple[ThreadPolicy, ForwardGate]:
    """Once per server process: apply the thread policy and make the gate."""
    policy = thread_policy()
    torch.set_num_threads(policy.threads_per_forward)
    return policy, ForwardGate(policy.concurrent_forwards)


def policy() -> ThreadPolicy:
    """This server's thread policy (applied to torch on first use)."""
    return _process_state()[0]


def gate() -> ForwardGate:
    """This server's forward gate."""
    return _process_state()[1]


class _Known:
    """Keys of results already computed (a bounded LRU): those skip the gate and its queued message."""

    def __init__(self, size: int = 512):
        self.size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            return False

    def add(self, key: Hashable) -> None:
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)


@st.cache_resource(show_spinner=False)
def _known() -> _Known:
    return _Known()


def gated(key: Hashable, what: str, compute: Callable[[], object]):
    """`compute()` (a cached call) through the gate unless `key` was computed before.

    While every slot is taken the page shows "Queued behind N model run(s)" and then what runs.
    """
    known = _known()
    if key in known:
        return compute()
    g = gate()
    box = st.empty()
    queued = {"shown": False}

    def on_wait(ahead: int) -> None:
        queued["shown"] = True
        box.status(f"Queued behind {counted(max(ahead, 1), 'model run')} of other sessions; {what} runs next ...",
                   state="running")

    start = time.monotonic()
    try:
        with g.slot(on_wait):
            waited = time.monotonic() - start
            if queued["shown"]:
                box.status(f"{what} (waited {waited:.1f} s in the queue) ...", state="running")
            value = compute()
        known.add(key)
    except BaseException:
        box.empty()
        raise
    if queued["shown"]:  # say why this page took longer than usual
        box.caption(f"Waited {waited:.1f} s in the queue behind other sessions' model runs "
                    f"({policy().describe()}).")
    else:
        box.empty()
    return value


@contextlib.contextmanager
def forward_slot() -> Iterator[None]:
    """Hold a slot of the gate around torch work (no message): for use inside cached functions."""
    with gate().slot():
        yield
