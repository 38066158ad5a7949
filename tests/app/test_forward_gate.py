"""The server's forward gate (ui.compute): at most `slots` forwards at once across sessions, the
others queued in order; a page whose model run waits says it was queued (AppTest)."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
from PIL import Image

from detector.models import DEMO_ARCH
from tests.app.conftest import app_test
from ui.compute import ForwardGate, ThreadPolicy, gate


def test_policy_never_oversubscribes_the_cores():
    for cores in (1, 2, 3, 16):
        for threads in (None, 1, 2, 4, 64):
            p = ThreadPolicy.for_cores(cores, threads)
            assert p.threads_per_forward * p.concurrent_forwards <= cores
            assert p.concurrent_forwards >= 1 and p.threads_per_forward >= 1
    assert ThreadPolicy.for_cores(2) == ThreadPolicy(2, 1, 2)


def test_gate_admits_at_most_its_slots_and_queues_the_rest():
    g = ForwardGate(2)
    inside, peak, waits = [0], [0], []
    lock = threading.Lock()

    def work(i: int) -> None:
        with g.slot(on_wait=lambda ahead: waits.append(ahead), poll_s=0.02):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            with g.slot():  # re-entrant: a cached call inside a gated block takes no second slot
                time.sleep(0.1)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2
    assert waits and max(waits) >= 1  # the queued sessions were told how many runs were ahead
    assert g.running == 0 and g.waiting == 0


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_page_whose_model_run_waits_says_it_was_queued():
    at = app_test("pages/rpn.py")
    at.session_state["model_source"] = DEMO_ARCH
    at.run()
    at.radio(key="rpn_source").set_value("Upload").run()
    assert not at.exception
    g = gate()
    held = [g._sem.acquire(timeout=30) for _ in range(g.slots)]  # every slot busy (other sessions' runs)
    assert all(held)
    seen_waiting = []

    def release_later() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and g.waiting == 0:
            time.sleep(0.05)
        seen_waiting.append(g.waiting)
        time.sleep(1.5)
        for _ in held:
            g._sem.release()

    t = threading.Thread(target=release_later)
    t.start()
    at.file_uploader(key="rpn_upload").set_value(("queued.png", _png(int(time.time())), "image/png")).run()
    t.join(40)
    assert not at.exception
    assert seen_waiting and seen_waiting[0] >= 1  # the page's run sat in the queue
    waited = [c.value for c in at.caption if "in the queue behind other sessions' model runs" in c.value]
    assert waited, [c.value for c in at.caption]
    assert float(waited[0].split("Waited ")[1].split(" s")[0]) >= 1.0
    assert "Objectness p = sigmoid" in "\n".join(c.value for c in at.caption)
