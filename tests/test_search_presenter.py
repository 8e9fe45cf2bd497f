"""What the window shows of the search: status lines and results views, built directly."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from sketch import overlay
from sketch_search.app.search_presenter import Presenter, coverage, found_line, ready_line
from sketch_search.app.search_scheduler import IndexState


def test_lines_say_how_much_of_the_gallery_was_searched_while_indexing():
    indexing = IndexState(1240, 10312, False)
    assert coverage(indexing) == "searched 1,240 of 10,312 photos"
    assert coverage(IndexState(10312, 10312, True)) == ""
    assert ready_line(indexing, gallery=True) == "indexing gallery: searched 1,240 of 10,312 photos"
    assert ready_line(IndexState(10312, 10312, True), gallery=True) == "ready: 10,312 photos indexed"
    assert ready_line(None, gallery=True) == "indexing gallery"
    assert ready_line(None, gallery=False).startswith("ready (no --gallery")
    view = overlay.ResultsView(np.zeros((4, 4, 3), np.uint8), None, "",
                               [overlay.ResultPhoto(Path("a.jpg"), "a.jpg", 0.5)], 1240, 2.0)
    assert found_line(view, False, indexing) == "found 1 photos, best 0.500 (2.0 s); searched 1,240 of 10,312 photos"
    assert found_line(view, True, None) == "found 1 photos, best 0.500 (2.0 s, ready ahead)"


def test_views_carry_the_total_and_thumbnails_follow_the_file(tmp_path):
    photo = tmp_path / "IMG_1.png"
    Image.new("RGB", (300, 200), (255, 0, 0)).save(photo)
    presenter = Presenter(thumbnails_kept=1)
    view = presenter.preview_view(Image.new("RGB", (64, 64), "white"), [(photo, 0.9), (tmp_path / "gone.jpg", 0.1)],
                                  IndexState(2, 50, False), 2, 0.2)
    assert view.total == 50 and view.gallery_size == 2 and view.label == overlay.PREVIEW_LABEL
    red, gone = view.photos
    assert gone.thumbnail is None and red.name == "IMG_1.png"
    assert min(red.thumbnail.shape[:2]) >= overlay.TILE and tuple(red.thumbnail[0, 0]) == (0, 0, 255)  # BGR
    # A photo changed on disk (a new file time) is read again, not taken from the cache.
    Image.new("RGB", (300, 200), (0, 0, 255)).save(photo)
    os.utime(photo, (1, 1))
    again = presenter.refreshed(view, [(photo, 0.8)], IndexState(50, 50, True), 50)
    assert tuple(again.photos[0].thumbnail[0, 0]) == (255, 0, 0) and again.total == 50
