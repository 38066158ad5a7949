"""When to stop early, and which epoch best.pt holds: the selection state over a run's validations.

How good one validation row is, is decided in one place, `best_score` / `is_better` here
(mAP or mAP50, higher better; val_loss as minus the loss; no mAP: minus the loss, so a row without
mAP never beats one with it). `Selection` keeps the best score so far, its epoch, its mAP and the
validations since, so that `stop_reason()` ends a run once `patience` validations in a row brought
nothing better. The state is plain values, kept in the checkpoints for --resume.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from detector.wording import counted


def best_score(val_row: dict[str, Any], metric: str = "mAP") -> float:
    """How good a validation line is for choosing best.pt, higher better: the one place "best" is decided.

    metric mAP or mAP50: that figure when pycocotools computed it, else minus the validation loss
    (a negative number, never mistaken for an mAP); val_loss: minus the validation loss.
    """
    value = val_row.get(metric) if metric != "val_loss" else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return -float(val_row["val_loss"])


def is_better(score: float, best: float | None) -> bool:
    """Whether a validation score (`best_score`) beats the best so far (None: nothing yet)."""
    return best is None or score > best


@dataclass
class Selection:
    """The best validation so far (by best_score) and how many validations have passed since."""

    metric: str  # what was asked for (TrainConfig.best_metric)
    patience: int | None = None  # validations without improvement before stopping; None: never
    best: float | None = None  # the best best_score so far (higher is better)
    used: str | None = None  # what the best score is: `metric`, or val_loss when that row had no mAP
    best_value: float | None = None  # the best row's figure in its own units (an mAP, or the loss)
    best_epoch: int | None = None
    best_map: float | None = None  # mAP (0.5:0.95) of the best epoch, when known
    stale: int = 0  # validations since the best

    def update(self, epoch: int, val_row: dict[str, Any]) -> bool:
        """Take one validation row; True when it is the new best (best.pt should be written)."""
        score = best_score(val_row, self.metric)
        if not is_better(score, self.best):
            self.stale += 1
            return False
        self.best, self.best_epoch, self.stale = score, epoch, 0
        self.used = self.metric if self.metric != "val_loss" and score >= 0 else "val_loss"
        self.best_value = score if self.used != "val_loss" else -score
        self.best_map = _number(val_row.get("mAP"))
        return True

    def stop_reason(self) -> str | None:
        """Why the run should end now (patience spent), or None."""
        if self.patience is None or self.stale < self.patience or self.best is None:
            return None
        return (f"early stop: {self.describe_used()} has not improved for {counted(self.stale, 'validation')} "
                f"(patience {self.patience}); best {self.best_value:.4f} at epoch {self.best_epoch}")

    def describe_used(self) -> str:
        if self.used is not None and self.used != self.metric:
            return f"{self.used} (no {self.metric} available)"
        return str(self.used or self.metric)

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, metric: str, patience: int | None,
                   best: float | None = None) -> "Selection":
        """Resume from a checkpoint's state (or, for older checkpoints, its `best_metric` score);
        the config's metric and patience win if they changed."""
        selection = cls(metric, patience)
        if isinstance(state, dict) and state.get("metric") == metric:
            for key in ("best", "used", "best_value", "best_epoch", "best_map", "stale"):
                setattr(selection, key, state.get(key, getattr(selection, key)))
        elif best is not None and metric == "mAP":
            selection.best = float(best)
            selection.used = "mAP" if best >= 0 else "val_loss"
            selection.best_value = best if best >= 0 else -best
        return selection


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
