"""How a training process starts, one policy for every way: the Train page (`start_training`), a
`python -m detector train` typed in a terminal, torchrun.

- The environment (`training_environment`): torch's OpenMP threads (libgomp) spin-wait 300000
  iterations for each other by default, burning the CPU a training that shares the cores is left
  with; a training gets GOMP_SPINCOUNT=10000 unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set (first
  step under two busy processes 137 -> 60 s, CPU 17.2 -> 8.4 s; as fast alone). libgomp reads it
  when it loads, so `python -m detector train` applies it before torch is imported, re-executing
  itself with it (`exec_in_training_environment`); the page passes it from the start.
- The process (`start_command`): `python -m detector ...` in its own session, for trainings and the
  anchor study alike.
- The CPU priority (`lower_cpu_priority`, `--nice N`): N nice levels lower, and the session's
  autogroup too when the process leads its session (the page starts trainings with TRAINING_NICE).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from detector.runs.folder import CONSOLE, clear_stop
from detector.runs.status import read_status, write_status

TRAINING_NICE = 10  # how much lower than the server a training started from a page runs (os.nice)
AUTOGROUP = Path("/proc/self/autogroup")
TRAINING_SPINCOUNT = "10000"  # libgomp spin iterations before a waiting thread sleeps (default 300000)
REPO_ROOT = Path(__file__).resolve().parents[2]


def training_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` as a training process runs with it: GOMP_SPINCOUNT=TRAINING_SPINCOUNT added unless
    OMP_WAIT_POLICY or GOMP_SPINCOUNT is set (then it is left as it is)."""
    env = dict(environ)
    if "OMP_WAIT_POLICY" not in env:
        env.setdefault("GOMP_SPINCOUNT", TRAINING_SPINCOUNT)
    return env


def exec_in_training_environment() -> None:
    """Re-execute this very command line (same pid) in `training_environment` when it differs from the
    current one; returns only when nothing needs to change. Call it before torch is imported."""
    env = training_environment(os.environ)
    if env != dict(os.environ):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, env)


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The nice value of a process's scheduling autogroup (sched(7)); None where the kernel has none."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def lower_cpu_priority(steps: int) -> None:
    """This process `steps` nice levels lower, and its session's autogroup too when it leads the session.

    With the kernel's autogroup scheduling on (sched(7); the default on most distributions) the CPU is
    shared between sessions first and nice only orders processes inside one: a training in its own
    session (as the Train page starts it) at nice 10 still took a full share against the server's.
    A process that does not lead its session (a command typed in a terminal) leaves the terminal's
    autogroup alone."""
    os.nice(steps)
    current = autogroup_nice()
    if current is not None and os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):
            AUTOGROUP.write_text(str(min(19, current + steps)))


def start_command(args: list[str], console: Path, environ: Mapping[str, str] | None = None) -> int:
    """Start `python -m detector ARGS...` in its own session, this project on PYTHONPATH, stdout and
    stderr appended to `console`; returns its pid. The process outlives the caller (a page refresh or a
    Streamlit restart leave it alone). How the Train page starts a training (`start_training`) and the
    Anchors page an anchor study (`detector.anchor_study.start_study`)."""
    env = dict(os.environ if environ is None else environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    Path(console).parent.mkdir(parents=True, exist_ok=True)
    with open(console, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "detector", *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=str(REPO_ROOT), env=env, start_new_session=True)
    return proc.pid


def start_training(run_dir: Path, extra_args: list[str] | None = None, resume: bool = False,
                   nice: int = TRAINING_NICE) -> int:
    """Start `python -m detector train --out RUN_DIR --nice N` in its own session; returns its pid.

    The process outlives the caller (a page refresh or a Streamlit restart leave it alone); its
    stdout/stderr go to RUN_DIR/console.log; the engine writes status, metrics and train.log. It
    runs `nice` steps below the caller's CPU priority, so the pages stay responsive while it trains
    on the CPU (the GPU's own work is not slowed by it), in `training_environment`.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    clear_stop(run_dir)
    args = ["train", "--out", str(run_dir)]
    if nice > 0:
        args += ["--nice", str(int(nice))]
    if resume:
        args.append("--resume")
    pid = start_command(args + list(extra_args or []), run_dir / CONSOLE, training_environment(os.environ))
    # The engine rewrites its whole status at every heartbeat, so this cannot hide "running" for long.
    if read_status(run_dir).state != "running":
        write_status(run_dir, state="queued", pid=pid, error=None)
    return pid
