"""The diagnosis pass on the server: one background thread per pass folder (one model on one data
set), shared by every session that asks for the same pass, so the server holds at most one pass
per model and data. The thread writes the folder (`detector.diagnosis.passes`); pages read its
status.json, so a refresh, a second tab or a second user sees the same progress, and a rerun of a
page never stops it (its Stop button writes the folder's STOP file).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from detector.diagnosis import passes


@dataclass
class PassJob:
    """One pass being written by this server."""

    folder: Path
    thread: threading.Thread | None = None
    error: str | None = None  # why the thread ended early (a bad image, a busy folder)
    done: threading.Event = field(default_factory=threading.Event)

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@st.cache_resource(show_spinner=False)
def _jobs() -> tuple[threading.Lock, dict[str, PassJob]]:
    return threading.Lock(), {}


def job(folder: Path) -> PassJob | None:
    """This server's job for `folder`, if it started one."""
    return _jobs()[1].get(str(folder))


def running(folder: Path) -> bool:
    """Whether the pass is being written: by this server's thread, or by another process (its lock)."""
    current = job(folder)
    return (current is not None and current.alive()) or passes.lock_holder(folder) is not None


def start(folder: Path, **run_kwargs: Any) -> PassJob:
    """Start (or join) the pass into `folder`: `passes.run_pass(folder=folder, **run_kwargs)` in a
    thread, unless one is already writing it."""
    lock, jobs = _jobs()
    with lock:
        current = jobs.get(str(folder))
        if current is not None and current.alive():
            return current
        new = PassJob(Path(folder))

        def work() -> None:
            try:
                passes.run_pass(folder=Path(folder), **run_kwargs)
            except Exception as exc:  # noqa: BLE001 - shown on the page; status.json says failed
                new.error = str(exc)
            finally:
                new.done.set()

        new.thread = threading.Thread(target=work, name=f"diagnosis-pass-{Path(folder).name}", daemon=True)
        jobs[str(folder)] = new
        new.thread.start()
        return new
