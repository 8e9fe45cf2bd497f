"""A save's answer: its files and its `results` event, written when it is answered and again each
time the same save is ranked over a larger index (a refresh). No thread and no lock: the search
thread calls it between jobs; what it returns is posted for the window.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sketch import overlay
from sketch_search.app.events import EventLog
from sketch_search.app.outputs import save_query_files, write_json
from sketch_search.app.search_presenter import Presenter
from sketch_search.app.search_scheduler import IndexState, Save


@dataclass
class SearchOutcome:
    """What the search thread posts for the window."""
    sketch_path: Path | None
    json_path: Path | None = None
    view: overlay.ResultsView | None = None
    error: str | None = None
    live: bool = False              # a preview (or --live full run), not a save's results
    speculative: bool = False       # a save answered by a run started ahead of it
    save_to_results: float | None = None
    refresh: bool = False           # a save's answer ranked again over a larger index


@dataclass(frozen=True)
class Finished:
    """A full run's answer, kept for saves of the same canvas."""
    result: Any                     # QueryResult (its vector ranks it again)
    png: bytes                      # the generated image, encoded once
    view: overlay.ResultsView
    speculative: bool
    searched: int                   # photos its ranking covered


@dataclass(frozen=True)
class Answer:
    """A save's latest answer: what a refresh ranks again and rewrites."""
    save: Save
    json_path: Path
    finished: Finished
    data: dict                      # the JSON written, less results/searched/total


def listed(results) -> list[dict]:
    """Ranked photos as the events and the JSON list them."""
    return [{"path": str(p), "score": round(float(s), 6)} for p, s in results]


def covered(index: IndexState | None, searched: int) -> dict:
    """`searched` (photos ranked) and `total` (photos known, indexed or not), for events and JSON."""
    return {"searched": searched, "total": max(index.total, searched) if index is not None else searched}


class SaveAnswers:
    """Writes a save's generated image and JSON and records its `results` events.

    `search.rank(vector)` ranks a kept vector over what is indexed now (SketchSearch.rank).
    """

    def __init__(self, search, presenter: Presenter, events: EventLog):
        self.search = search
        self.presenter = presenter
        self.events = events

    def answer(self, save: Save, finished: Finished, index: IndexState | None,
               searched: int) -> tuple[Answer, SearchOutcome]:
        """The save's files from a finished run (ranked again if the index grew since it ran).
        Raises a SketchSearchError when a file cannot be written."""
        if searched != finished.searched:  # a run ahead over fewer photos: its vector, ranked again
            results = self.search.rank(finished.result.vector)
            finished = dataclasses.replace(
                finished, result=dataclasses.replace(finished.result, results=results),
                view=self.presenter.refreshed(finished.view, results, index, searched), searched=searched)
        generated_path = save.path.with_name(f"{save.path.stem}-generated.png")
        json_path = save.path.with_suffix(".json")
        data = save_query_files(finished.result, finished.png, None, generated_path, None)
        # Ready: the image is on disk, the JSON (with this number in it) follows in a moment.
        save_to_results = round(time.monotonic() - save.saved_at, 4)
        data.update(speculative=finished.speculative, save_to_results=save_to_results)
        answer = Answer(save, json_path, finished, data)
        self._write(answer, finished.result.results, index, searched)
        self.events.write("results", sketch=str(save.path), speculative=finished.speculative,
                          save_to_results=save_to_results, **covered(index, searched),
                          results=listed(finished.result.results))
        return answer, SearchOutcome(save.path, json_path, finished.view, speculative=finished.speculative,
                                     save_to_results=save_to_results)

    def refresh(self, answer: Answer, index: IndexState | None, searched: int) -> SearchOutcome:
        """The save ranked again over the larger index: its JSON rewritten, its event recorded.
        Raises a SketchSearchError when the JSON cannot be written (the one before stays)."""
        results = self.search.rank(answer.finished.result.vector)
        view = self.presenter.refreshed(answer.finished.view, results, index, searched)
        self._write(answer, results, index, searched)
        self.events.write("results", sketch=str(answer.save.path), refresh=True,
                          speculative=answer.finished.speculative, **covered(index, searched),
                          results=listed(results))
        return SearchOutcome(answer.save.path, answer.json_path, view, speculative=answer.finished.speculative,
                             refresh=True)

    @staticmethod
    def _write(answer: Answer, results, index: IndexState | None, searched: int) -> None:
        write_json(answer.json_path, dict(answer.data, results=listed(results), **covered(index, searched)))
