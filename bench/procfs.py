"""/proc readings of the benchmarks: a process's CPU seconds and resident memory, and the CPU
seconds of every Chromium process below this one (sampled in a thread, so processes that exit are
still counted up to their last sample)."""

from __future__ import annotations

import os
import threading

TICK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads), seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE / 2**20
    except OSError:
        return float("nan")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


class BrowserCPU:
    """Cumulative CPU seconds of every Chromium process below this process, sampled in a thread."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.seen: dict[tuple[int, float], float] = {}  # (pid, start tick) -> last cpu seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> BrowserCPU:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        kids = _children()
        todo, found = [os.getpid()], []
        while todo:
            pid = todo.pop()
            for child in kids.get(pid, []):
                todo.append(child)
                if _comm(child).startswith("chrom"):
                    found.append(child)
        with self._lock:
            for pid in found:
                try:
                    with open(f"/proc/{pid}/stat", "rb") as fh:
                        fields = fh.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                self.seen[(pid, float(fields[19]))] = (int(fields[11]) + int(fields[12])) / TICK

    def total(self) -> float:
        self.sample()
        with self._lock:
            return sum(self.seen.values())
