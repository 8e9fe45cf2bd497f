"""Hands in single, possibly tiny photos (tools and tests; the window uses the video tracker).

The photo is upscaled and padded first, because the palm detector misses hands that fill a
small frame edge to edge; when no hand is found the next view of PHOTO_VIEWS is tried, so the
common case costs one detection. When the hand found is implausible (sketch/plausibility.py),
a second look at a tighter, upscaled crop around it may give a plausible fit, which is kept.
`looks_in_photo` adds other looks (CHECK_VIEWS) for a reader that counts only what most looks
agree on (sketch/gestures.py read_looks).
"""
from __future__ import annotations

import logging

import numpy as np

from sketch.plausibility import doubt_about_hand
from sketch.tracker import Hand, HandTracker, check_rgb
from sketch.views import PhotoView, hand_in_view, second_look

logger = logging.getLogger(__name__)

# Static detection in photos: lower than MediaPipe's 0.5 because a photo is known to
# hold a hand; on the shared photos 0.5 missed about twice as many.
PHOTO_DETECTION_CONFIDENCE = 0.3

# Tried in order until one finds a hand. On the 418 shared photos (100 px) the first
# misses about 1 %, the cascade none; later views mostly rescue turned or odd crops.
PHOTO_VIEWS: tuple[PhotoView, ...] = (
    PhotoView(),
    PhotoView(side=192, border=0.5),
    PhotoView(mirror=True),
    PhotoView(turn=30.0),
    PhotoView(turn=-30.0),
)
# The other looks at a photo whose hand was found (looks_in_photo): the whole photo mirrored and
# turned by 20 degrees. MediaPipe fits each afresh; the reader keeps the count most looks agree
# on (sketch/gestures.py read_looks). On hand-counting's photos (never trained on) the vote of
# these three looks reads 95.1 % right and 3.0 % wrong (turned 45 degrees: 93.3 %, 3.8 %) where
# the first look alone read 94.5 % and 4.0 % (93.3 %, 5.1 %); requiring the first two looks to
# agree gave 1.8 % wrong but 91.4 % right (BENCHMARKS.md, "second round"). A tighter crop (the
# second look's) fitted worse than these views.
CHECK_VIEWS: tuple[PhotoView, ...] = (PhotoView(mirror=True), PhotoView(turn=20.0))


def photo_tracker() -> HandTracker:
    """A static HandTracker as photo detection wants it (close it, or use it in `with`)."""
    return HandTracker(static_image_mode=True, min_detection_confidence=PHOTO_DETECTION_CONFIDENCE)


def first_look(tracker: HandTracker, image: np.ndarray) -> Hand | None:
    """The hand found in the first of PHOTO_VIEWS that shows one, in the photo's coordinates."""
    for view in PHOTO_VIEWS:
        hand = hand_in_view(tracker, image, view)
        if hand is not None:
            if view is not PHOTO_VIEWS[0]:
                logger.debug("hand found only in the view %s", view)
            return hand
    return None


def detect_in_photo(image_rgb: np.ndarray, tracker: HandTracker | None = None,
                    look_twice: bool = True) -> Hand | None:
    """A hand in one photo (landmarks refer to the photo as given), or None.

    `tracker`: a static HandTracker to reuse (photo_tracker()); `look_twice`: an implausible
    first fit gets a second look at a crop around it.
    """
    if tracker is None:
        with photo_tracker() as own:
            return detect_in_photo(image_rgb, own, look_twice)
    if not tracker.static_image_mode:
        raise RuntimeError("detect_in_photo needs a HandTracker(static_image_mode=True)")
    image = check_rgb(image_rgb)
    hand = first_look(tracker, image)
    if hand is None or not look_twice or doubt_about_hand(hand) is None:
        return hand
    closer = second_look(tracker, image, hand)
    if closer is not hand:
        logger.debug("second look fitted a plausible hand")
    return closer


def looks_in_photo(image_rgb: np.ndarray, tracker: HandTracker | None = None) -> list[Hand | None]:
    """The hand of detect_in_photo, then the hand (or None) each of CHECK_VIEWS shows, all in the
    photo's coordinates; [] when no hand is found."""
    if tracker is None:
        with photo_tracker() as own:
            return looks_in_photo(image_rgb, own)
    hand = detect_in_photo(image_rgb, tracker)
    if hand is None:
        return []
    image = check_rgb(image_rgb)
    return [hand] + [hand_in_view(tracker, image, view) for view in CHECK_VIEWS]
