"""A new gallery searched while it is indexed (issue 18), with tiny real models and real SQLite.

The gallery is 200 small generated photos with distinct file times, indexed one batch a slice
so that indexing takes many slices: a save made at start-up is answered after the first slice,
from the newest photos; the same save is then ranked again as the index grows (refresh events,
its JSON rewritten) until the last answer covers every photo and equals main2.py's over the same
index; photos that arrive from the phone meanwhile join the queue.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

PHOTOS = 200
BATCH = 4
TOP_K = 5
CAT = ROOT / "examples" / "sketches" / "cat.png"


def write_photos(folder: Path, count: int, first: int, start_time: float) -> list[Path]:
    """`count` distinct 64 px JPEGs; photo i is one second newer than photo i - 1."""
    rng = np.random.default_rng(first)
    paths = []
    for i in range(first, first + count):
        base = rng.integers(0, 256, 3)
        pixels = np.clip(base + rng.normal(0, 60, (8, 8, 3)), 0, 255).astype(np.uint8)
        path = folder / f"IMG_{i:04d}.jpg"
        Image.fromarray(pixels).resize((64, 64), Image.NEAREST).save(path, quality=90)
        os.utime(path, (start_time + i, start_time + i))
        paths.append(path)
    return paths


@pytest.fixture
def big_gallery(tmp_path) -> Path:
    folder = tmp_path / "gallery"
    folder.mkdir()
    write_photos(folder, PHOTOS, 0, time.time() - 10_000)
    return folder


def search_for(tiny_checkpoints):
    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch
    return SketchSearch(Settings(checkpoints=tiny_checkpoints, show_progress=False, top_k=TOP_K,
                                 batch_size=BATCH))


def until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def results_events(events, sketch: Path) -> list[dict]:
    return [e for e in events if e["event"] == "results" and e["sketch"] == str(sketch)]


def test_a_save_during_indexing_is_answered_from_the_newest_photos_then_refreshed(
        tiny_checkpoints, big_gallery, tmp_path):
    from sketch_search.app.events import EventLog
    from sketch_search.app.search_worker import SearchWorker, WorkerOwner

    events = EventLog(tmp_path / "events.jsonl")
    changed = threading.Event()
    worker = SearchWorker(search_for(tiny_checkpoints), big_gallery, changed, live="off",
                          events=events, slice_seconds=0.0)
    sketch = tmp_path / "sketch-1.png"
    Image.open(CAT).save(sketch)
    with WorkerOwner(worker, stop_seconds=30):
        worker.submit(Image.open(sketch).convert("RGB"), sketch)   # before the models have loaded
        assert worker.wait(120)
        first = results_events(events.events, sketch)[0]
        # Answered before indexing ended, over the newest photos only.
        assert 0 < first["searched"] < first["total"] == PHOTOS, first
        newest = {f"IMG_{i:04d}.jpg" for i in range(PHOTOS - first["searched"], PHOTOS)}
        assert {Path(r["path"]).name for r in first["results"]} <= newest
        until(lambda: worker.index is not None and worker.index.done
              and results_events(events.events, sketch)[-1]["searched"] == PHOTOS)
        answers = results_events(events.events, sketch)
        refreshes = answers[1:]
        assert refreshes and all(e["refresh"] is True for e in refreshes)
        assert [e["searched"] for e in answers] == sorted({e["searched"] for e in answers})
        last = answers[-1]
        assert last["searched"] == last["total"] == PHOTOS
        data = json.loads(sketch.with_suffix(".json").read_text())
        assert data["results"] == last["results"] and data["searched"] == data["total"] == PHOTOS
        # The panel's view follows: refreshed outcomes, the last covering every photo (posted
        # just after its event is written).
        outcomes = []
        until(lambda: outcomes.extend(o for o in worker.finished() if o.sketch_path == sketch)
              or outcomes[-1].view.gallery_size == PHOTOS)
        assert outcomes[-1].refresh and outcomes[-1].view.total == PHOTOS
        assert not outcomes[0].refresh and outcomes[0].view.gallery_size == first["searched"]
        # The status line's "found ..." followed the answer: no "searched X of Y" once all are.
        until(lambda: worker.status[0].startswith("found ") and "searched" not in worker.status[0])

        # Photos from the phone join the queue (newer than all), and the answer grows with them.
        write_photos(big_gallery, 20, PHOTOS, time.time() - 10_000)
        changed.set()
        until(lambda: results_events(events.events, sketch)[-1]["total"] == PHOTOS + 20
              and results_events(events.events, sketch)[-1]["searched"] == PHOTOS + 20)
    events.close()

    # The complete answer equals main2.py's over the same (now finished) index.
    out = tmp_path / "main2.json"
    done = subprocess.run([sys.executable, str(ROOT / "main2.py"), "--image_path", str(sketch),
                           "--gallery", str(big_gallery), "--checkpoints", str(tiny_checkpoints),
                           "--top_k", str(TOP_K), "--output", str(tmp_path / "grid.png"),
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    headless = json.loads(out.read_text())
    final = json.loads(sketch.with_suffix(".json").read_text())
    assert [r["path"] for r in final["results"]] == [r["path"] for r in headless["results"]]
    assert np.allclose([r["score"] for r in final["results"]], [r["score"] for r in headless["results"]],
                       atol=1e-4)
    assert headless["index"]["added"] == 0   # main2 found everything indexed already


def test_a_program_that_ends_while_indexing_does_not_wait_for_it(tiny_checkpoints, tmp_path):
    from sketch_search.app.search_worker import SearchWorker, WorkerOwner

    gallery = tmp_path / "gallery"
    gallery.mkdir()
    write_photos(gallery, 5 * PHOTOS, 0, time.time() - 10_000)
    worker = SearchWorker(search_for(tiny_checkpoints), gallery, live="off", slice_seconds=0.0)
    with WorkerOwner(worker, stop_seconds=10) as owner:
        until(lambda: worker.index is not None and 0 < worker.index.searched)
        stopped = time.monotonic()
    assert time.monotonic() - stopped < 5 and not owner.hard_exit_needed
    assert worker.index.searched < worker.index.total == 5 * PHOTOS
