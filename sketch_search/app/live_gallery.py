"""The live gallery: the photos searched so far, kept in memory and growing while indexing goes on.

`start_index` walks the gallery and compares it with its index file (retrieval.index): the
photos already indexed become searchable at once, the new and changed ones are queued newest
first; each `index_slice` embeds about a second of them and adds them to the in-memory vector
search. Each photo has an id in that search (its relative path -> id -> its absolute path); a
photo deleted or changed leaves the search, one re-embedded gets a new id. `rank` is the cosine
top-k over what is searched now. No model of its own: it is handed the embedder.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from checkpoints import layout
from retrieval.embedder import DinoEmbedder
from retrieval.gallery import gallery_folder
from retrieval.index import GalleryIndex, IndexProgress, IndexReport, IndexRun, default_index_path
from retrieval.search import VectorSearch
from sketch_search.app.settings import Settings
from sketch_search.common.cancel import CancelCheck

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


class LiveGallery:
    """The in-memory search over what is indexed so far, and the indexing run that grows it.

    `embedder()`: the embedder, loaded if need be. `lock`: held for every update and ranking
    (shared with the model pipeline: one model call or index update at a time).
    """

    def __init__(self, settings: Settings, embedder: Callable[[], DinoEmbedder], lock: threading.Lock):
        self.settings = settings
        self._embedder = embedder
        self.lock = lock
        self._search = VectorSearch(np.zeros((0, 0), np.float32))
        self._id_of: dict[str, int] = {}      # relative path -> id
        self._path_of: dict[int, Path] = {}   # id -> absolute path
        self._next_id = 0
        self._gallery: Path | None = None
        self._run: IndexRun | None = None    # indexing in progress (None: nothing queued)
        self._report = IndexReport()          # what the last finished run did
        self._rebuild_index = settings.rebuild_index  # the first index opened is rebuilt, no later one

    # -- ranking --------------------------------------------------------------------------------
    def rank(self, vector: np.ndarray, k: int | None = None) -> list[tuple[Path, float]]:
        """The indexed photos most like `vector`, best first, with cosine scores."""
        with self.lock:
            return self.ranked(vector, self.settings.top_k if k is None else k)

    def ranked(self, vector: np.ndarray, k: int) -> list[tuple[Path, float]]:
        """rank() for a caller that already holds the lock."""
        hits = self._search.top_k(vector, k) if len(self._search) else []
        return [(self._path_of[i], float(score)) for i, score in hits]

    @property
    def gallery_size(self) -> int:
        """Photos searched: those in the in-memory search."""
        return len(self._search)

    @property
    def gallery_total(self) -> int:
        """Photos known that will be searched, indexed or not (skipped files not counted)."""
        return self._progress().total

    # -- indexing -------------------------------------------------------------------------------
    def index_path(self, gallery: Path) -> Path:
        return self.settings.index_path or default_index_path(
            gallery, layout.embedder_dir_name(self.settings.embedder))

    def index_gallery(self, gallery: Path, progress: ProgressFn | None = None) -> IndexReport:
        """Bring the gallery's index up to date and search all of it (main2: the complete index
        before the first answer). `progress(done, total)` after each batch, counting the photos
        decoded of those to embed."""
        self.start_index(gallery)
        todo = self.gallery_total - self.gallery_size
        while True:
            state = self.index_slice(0.0)  # one batch at a time
            if progress and todo:
                progress(todo - (state.total - state.searched), todo)
            if state.done:
                return self._report

    def start_index(self, gallery: Path) -> None:
        """Walk the gallery and compare it with its index; make the photos already indexed
        searchable at once (only those not yet in memory are read); queue the new and changed
        ones, newest first, for `index_slice`. Called again (the phone brought photos), new
        photos join the queue by their time; deleted and changed ones leave the search."""
        embedder = self._embedder()
        gallery = gallery_folder(gallery).absolute()
        with self.lock:
            if self._run is None or self._run.gallery != gallery:
                self._open_run(gallery, embedder)
            changes = self._run.rescan()
            keep = set(changes.keep)
            self._forget([rel for rel in self._id_of if rel not in keep])
            missing = [rel for rel in changes.keep if rel not in self._id_of]
            if missing:
                paths, vectors = self._run.index.load_vectors(only=set(missing))
                self._remember([(path.relative_to(gallery).as_posix(), path) for path in paths], vectors)
            log.info("gallery %s: %d photos searchable, %d to index", gallery, len(self._search),
                     self._run.pending)

    def index_slice(self, seconds: float = 1.0, cancelled: CancelCheck | None = None) -> IndexProgress:
        """Decode, embed and commit about `seconds` of queued photos (at least one batch), newest
        first, and add them to the search. Stops after the batch in progress when `cancelled()`
        turns True; what was committed stays (the next slice, or the next run, goes on)."""
        with self.lock:
            run = self._run
            if run is not None:
                deadline = time.perf_counter() + seconds
                while run.pending:
                    added = run.step()
                    if added:
                        self._remember([(rel, run.gallery / rel) for rel, _ in added],
                                       np.stack([vector for _, vector in added]))
                    if time.perf_counter() >= deadline or (cancelled is not None and cancelled()):
                        break
                if not run.pending:
                    self._close_run()
            return self._progress()

    # -- inside the lock ------------------------------------------------------------------------
    def _open_run(self, gallery: Path, embedder: DinoEmbedder) -> None:
        self._close_run()
        if self._gallery != gallery:  # another gallery: nothing in memory belongs to it
            self._id_of, self._path_of = {}, {}
            self._search = VectorSearch(np.zeros((0, 0), np.float32))
        rebuild, self._rebuild_index = self._rebuild_index, False  # once, not per call
        index = GalleryIndex(self.index_path(gallery), rebuild=rebuild)
        self._run = IndexRun(index, gallery, embedder, self.settings.batch_size)
        self._gallery = gallery

    def _close_run(self) -> None:
        if self._run is not None:
            self._report = self._run.report
            self._run.close()
            self._run.index.close()
            self._run = None

    def _forget(self, stale: list[str]) -> None:
        """Photos gone or changed leave the search."""
        self._search.remove([self._id_of[rel] for rel in stale])
        for rel in stale:
            del self._path_of[self._id_of.pop(rel)]

    def _remember(self, photos: list[tuple[str, Path]], vectors: np.ndarray) -> None:
        """Append vectors to the in-memory search, under new ids; nothing else is re-read."""
        ids = np.arange(self._next_id, self._next_id + len(photos), dtype=np.int64)
        self._next_id += len(photos)
        again = [self._id_of[rel] for rel, _ in photos if rel in self._id_of]
        self._search.remove(again)  # a photo re-embedded: its new vector replaces the old
        for old in again:
            del self._path_of[old]
        for new_id, (rel, path) in zip(ids.tolist(), photos):
            self._id_of[rel], self._path_of[new_id] = new_id, path
        self._search.add(vectors, ids)

    def _progress(self) -> IndexProgress:
        pending = self._run.pending if self._run is not None else 0
        return IndexProgress(len(self._search), len(self._search) + pending, pending == 0)
