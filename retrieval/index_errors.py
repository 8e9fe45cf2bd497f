"""Why a gallery index file cannot serve, and the ways out, in the index's own terms.

Light on purpose (no numpy, no torch): the command line imports it to name the ways out in its
own flags (sketch_search.app.cli.index_error_with_flags).
"""
from __future__ import annotations

from enum import StrEnum

from sketch_search.common.errors import GalleryError


class WayOut(StrEnum):
    """A way out of an unusable index (a program says it in its own flags: WAYS_OUT otherwise)."""

    REBUILD = "rebuild"
    ELSEWHERE = "elsewhere"
    WRITABLE = "writable"
    OTHER_DISK = "other_disk"
    WAIT = "wait"
    FREE_SPACE = "free_space"
    NEWER_PROGRAM = "newer_program"


# The ways out of an unusable index, as a library says them.
WAYS_OUT = {
    WayOut.REBUILD: "rebuild it from the photos (the old file is moved aside, not deleted)",
    WayOut.ELSEWHERE: "keep the index in another file",
    WayOut.WRITABLE: "keep the index in a writable place",
    WayOut.OTHER_DISK: "keep the index on another disk",
    WayOut.WAIT: "wait for the other search to finish",
    WayOut.FREE_SPACE: "free some space",
    WayOut.NEWER_PROGRAM: "use the version that wrote it",
}


class IndexFileError(GalleryError):
    """The index file is damaged, in use, foreign, newer or not writable.

    `problem` says what is wrong; `ways_out` names what to do (WayOuts, in order).
    """

    def __init__(self, problem: str, ways_out: tuple[WayOut, ...]):
        self.problem, self.ways_out = problem, ways_out
        super().__init__(f"{problem}; {', or '.join(WAYS_OUT[way] for way in ways_out)}")
