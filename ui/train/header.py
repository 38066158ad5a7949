"""The selected run's header on the training page: what it trains (one line from its config) and
the note under it that says what its state means and what to do next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from detector import runs
from detector.wording import counted


def config_summary(config: dict[str, Any]) -> str:
    """One line: where the run starts from, its epochs, batch, learning rate, schedule, size and device."""
    start = (f"init {Path(str(config['init'])).name}" if config.get("init")
             else f"{config.get('model') or 'default model'} ({'COCO' if config.get('weights') == 'coco' else 'random'} weights)")
    lr = config.get("lr") or "auto"
    kwargs = config.get("model_kwargs") or {}
    size = f", size {kwargs.get('min_size', '-')}/{kwargs.get('max_size', '-')}" if kwargs else ""
    return (f"{start}; {counted(config.get('epochs'), 'epoch')}, batch {config.get('batch_size')}, lr {lr}, "
            f"{config.get('optimizer')} / {config.get('schedule')}{size}, device {config.get('device')}")


STATE_ICONS = {"interrupted": ":material/warning:", "failed": ":material/error:", "stopped": ":material/stop_circle:"}


def render_state_note(state: str, status: runs.RunStatus) -> None:
    """The one line under a run's header that says what its state means and what to do next."""
    if state == "interrupted":
        st.warning("This run's process is gone (or its heartbeat is stale) while it said it was training: it was "
                   "interrupted, e.g. by a restart. Resume continues from its last checkpoint.", icon=STATE_ICONS[state])
    elif state == "failed":
        st.error(f"The run failed: {status.error or 'see the log below'}", icon=STATE_ICONS[state])
    elif state == "stopped":
        st.info("Stopped on request. Resume continues from the last checkpoint.", icon=STATE_ICONS[state])
    elif state == "done" and status.extra.get("reason"):
        st.caption(f"Finished: {status.extra['reason']}.")  # all epochs, or the early stop and its best epoch
