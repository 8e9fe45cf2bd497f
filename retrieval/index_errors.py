"""Why a gallery index file cannot serve, and the ways out, in the index's own terms.

Light on purpose (no numpy, no torch): the command line imports it to name the ways out in its
own flags (sketch_search.app.cli.index_error_with_flags).
"""
from __future__ import annotations

from sketch_search.common.errors import GalleryError

# The ways out of an unusable index, as a library says them.
WAYS_OUT = {
    "rebuild": "rebuild it from the photos (the old file is moved aside, not deleted)",
    "elsewhere": "keep the index in another file",
    "writable": "keep the index in a writable place",
    "other_disk": "keep the index on another disk",
    "wait": "wait for the other search to finish",
    "free_space": "free some space",
    "newer_program": "use the version that wrote it",
}


class IndexFileError(GalleryError):
    """The index file is damaged, in use, foreign, newer or not writable.

    `problem` says what is wrong; `ways_out` names what to do (keys of WAYS_OUT, in order).
    """

    def __init__(self, problem: str, ways_out: tuple[str, ...]):
        self.problem, self.ways_out = problem, ways_out
        super().__init__(f"{problem}; {', or '.join(WAYS_OUT[way] for way in ways_out)}")
