"""What the results panel and the result tiles show: the matches for the drawing so far (a
preview or a run ahead), a save's results (or its error), and that save's answer ranked again over
a larger index. No thread: the loop hands it what the search worker posted.
"""
from __future__ import annotations

from sketch import overlay
from sketch_search.app.commands import Commands
from sketch_search.app.search_answers import SearchOutcome
from sketch_search.app.timed_line import TimedLine
from sketch_search.common.names import display_name


class ResultsPanel:
    """`view`: what the panel shows (None: the help); `commands`: whose screen gets the tiles;
    `toasts`: where a save's error is said (and "searching ..." ends)."""

    def __init__(self, commands: Commands, toasts: TimedLine):
        self.commands = commands
        self.toasts = toasts
        self.view: overlay.ResultsView | None = None
        self._final_view: overlay.ResultsView | None = None   # the last save's results

    def show(self, view: overlay.ResultsView | None) -> None:
        if view is not self.view:
            self.view = view
            # The matches become tiles (not while one is held: see Screen.offer_results).
            screen = self.commands.screen
            if screen is not None:   # None: the video ended before its first frame
                screen.offer_results(view.photos if view is not None else [], self.commands.presser.holding)

    def back_to_saved(self) -> None:
        """The canvas was cleared or erased: back to the last save's results."""
        self.show(self._final_view)

    def collect(self, outcomes: list[SearchOutcome]) -> None:
        """Previews, a save's results (or its error), and a save's answer ranked again over a
        larger index (shown if its results are on show)."""
        for outcome in outcomes:
            if outcome.live:  # matches for the drawing so far, until a save's results
                self.show(outcome.view)
            elif outcome.refresh:
                if self.view is self._final_view:
                    self.show(outcome.view)
                self._final_view = outcome.view
            elif outcome.view is not None:
                self._final_view = outcome.view
                self.show(outcome.view)
                self.toasts.clear()  # "searching ..." is over
            else:
                self.toasts.show(display_name(f"{outcome.sketch_path.name}: {outcome.error}"), error=True)
