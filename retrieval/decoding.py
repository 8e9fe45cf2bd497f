"""Photos decoded in worker threads, a bounded number ahead of the embedder, handed out in batches.

At most `ahead` batches are decoding or decoded and waiting (bounded memory; with the decode
budget, large photos also wait for each other's memory). Decoding goes on while the embedder
works on the previous batch, and, between index slices, while a query runs.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image

from retrieval.gallery import GalleryFile
from retrieval.images import DecodeBudget
from sketch_search.common.errors import NotAnImageError

LoadFn = Callable[[str, int | None, DecodeBudget | None], Image.Image]


@dataclass
class DecodedBatch:
    files: list[GalleryFile] = field(default_factory=list)   # decoded, in queue order
    images: list[Image.Image] = field(default_factory=list)  # one per file
    failed: list[tuple[GalleryFile, NotAnImageError]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files) + len(self.failed)


class BatchDecoder:
    """A queue of photos to decode; `next_batch` gives the next `batch_size` of them, decoded."""

    def __init__(self, load: LoadFn, min_side: int | None, batch_size: int = 16, workers: int = 4,
                 budget: DecodeBudget | None = None, ahead: int = 2):
        self._load, self._min_side, self._budget = load, min_side, budget
        self.batch_size = max(1, batch_size)
        self._limit = max(1, ahead) * self.batch_size
        self._queue: deque[GalleryFile] = deque()
        self._started: deque[tuple[GalleryFile, Future]] = deque()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode")

    def __len__(self) -> int:
        """Photos queued and not yet handed out (decoding ones included)."""
        return len(self._queue) + len(self._started)

    def started(self) -> set[str]:
        return {file.path for file, _ in self._started}

    def replace_queue(self, files: Iterable[GalleryFile]) -> None:
        """The photos to decode after those already decoding (which keep their turn)."""
        decoding = self.started()
        self._queue = deque(f for f in files if f.path not in decoding)
        self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._started) < self._limit:
            file = self._queue.popleft()
            self._started.append((file, self._pool.submit(self._load, file.full, self._min_side,
                                                          self._budget)))

    def next_batch(self) -> DecodedBatch:
        """The next batch in queue order (empty when the queue is); waits for its decoding."""
        batch = DecodedBatch()
        self._fill()
        while self._started and len(batch) < self.batch_size:
            file, future = self._started.popleft()
            self._fill()
            try:
                batch.images.append(future.result())
                batch.files.append(file)
            except NotAnImageError as exc:
                batch.failed.append((file, exc))
        return batch

    def close(self) -> None:
        self._queue.clear()
        self._started.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
