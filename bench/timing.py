"""Side-by-side timing: A and B alternate in one process (A B B A A B ...), medians, ratios; peak RSS."""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Comparison:
    """Seconds of A and B over the same repeats (alternating), and A / B."""

    a: list[float]
    b: list[float]

    @property
    def ratio(self) -> float:
        """median(A) / median(B)."""
        return statistics.median(self.a) / statistics.median(self.b)

    @property
    def pair_ratio(self) -> float:
        """Median over repeats of A_i / B_i (each pair ran back to back: robust to load drifting)."""
        return statistics.median(a / b for a, b in zip(self.a, self.b))

    def summary(self, scale: float = 1000.0) -> dict:
        return {"a_median": statistics.median(self.a) * scale, "b_median": statistics.median(self.b) * scale,
                "ratio": self.ratio, "pair_ratio": self.pair_ratio, "repeats": len(self.a)}


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(a: Callable[[], float], b: Callable[[], float], repeats: int, warmup: int = 1) -> Comparison:
    """Run a and b `repeats` times each, alternating A B B A A B ... after `warmup` untimed rounds.

    Each callable returns the seconds it measured (so set-up inside it can be left out).
    """
    for _ in range(warmup):
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    for i in range(repeats):
        gc.collect()
        if i % 2 == 0:
            ta.append(a())
            tb.append(b())
        else:
            tb.append(b())
            ta.append(a())
    return Comparison(ta, tb)


def repeat(fn: Callable[[], float], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        gc.collect()
        out.append(fn())
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MiB (its largest child's if that is larger)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
