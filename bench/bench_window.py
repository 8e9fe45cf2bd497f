"""What the touchless window costs the camera loop, and how long a photo takes to open.

    python -m bench.bench_window [--repeats 300]

1. `AirCanvasApp.compose()` (the window's picture, drawn every frame) at 640 x 480 in three
   states: drawing with the buttons, drawing with the buttons and five match tiles, a photo
   open. The app is fed one real frame (a fist photo of ../shared, through MediaPipe) first.
2. `open_photo` (decode with EXIF orientation through the shared decode budget, fit to the
   view; it runs on the viewer's background thread, never on the loop) for a 12-megapixel
   (4000 x 3000) JPEG, which decodes at reduced scale, and the same picture as PNG, which
   cannot.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from sketch.controls import tile
from sketch.overlay import ResultPhoto
from sketch_search.app.air_canvas import AirCanvasApp, AppOptions
from sketch_search.app.photo_view import open_photo
from tools.fixtures.pointer_video import Pointing


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (f"median {statistics.median(ordered) * 1000:.2f} ms, "
            f"p90 {ordered[int(len(ordered) * 0.9)] * 1000:.2f} ms")


def _compose_times(app: AirCanvasApp, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        app.compose()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = []
        for name in ("astronaut", "chelsea", "coffee", "rocket", "coins"):
            image = getattr(data, name)()
            image = image if image.ndim == 3 else np.dstack([image] * 3)
            path = folder / f"{name}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            photos.append(ResultPhoto(path, path.name, 0.9, cv2.resize(cv2.imread(str(path)), (148, 148))))
        app = AirCanvasApp(AppOptions(source=0, sketch_dir=folder, window=False))
        app.step(Pointing().rest(0.1).frames[0][0], 0.0)
        try:
            print(f"compose, drawing with buttons: {_ms(_compose_times(app, args.repeats))}")
            app.screen.offer_results(photos)
            print(f"compose, buttons + 5 tiles: {_ms(_compose_times(app, args.repeats))}")
            app.press(tile(1))
            frame, deadline = Pointing().rest(0.1).frames[0][0], time.monotonic() + 30

            def checked() -> bool:   # the viewer's phone check comes after its decode
                return all(c.reason != "checking" for c in app.screen.controls())
            while not checked() and time.monotonic() < deadline:
                app.step(frame, 0.1)   # collects the viewer's results
                time.sleep(0.02)
            print(f"compose, a photo open: {_ms(_compose_times(app, args.repeats))}")
        finally:
            app.tracker.close()
        big = cv2.resize(cv2.imread(str(photos[0].path)), (4000, 3000), interpolation=cv2.INTER_CUBIC)
        noise = np.random.default_rng(0).integers(-20, 20, big.shape)
        big = np.clip(big.astype(int) + noise, 0, 255).astype(np.uint8)   # camera-like detail
        for suffix in (".jpg", ".png"):
            path = folder / f"big{suffix}"
            cv2.imwrite(str(path), big)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                opened = open_photo(path, (640, 480))
                times.append(time.perf_counter() - start)
            assert opened.image is not None
            print(f"open_photo 4000 x 3000 {suffix[1:].upper()}: {_ms(times)}")


if __name__ == "__main__":
    main()
