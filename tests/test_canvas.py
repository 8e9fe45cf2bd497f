"""The air canvas: strokes, undo, clear, eraser, colours, export cropping, blank export refused."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sketch.canvas import BLACK, ERASER_WIDTH, GREEN, RED, Canvas, Stroke
from sketch_search.common.errors import BlankSketchError

W, H = 640, 480


def line(canvas: Canvas, color, start, end, width=6, erase=False, n=10):
    canvas.begin(color, width, erase)
    for i in range(n + 1):
        canvas.add((start[0] + (end[0] - start[0]) * i / n, start[1] + (end[1] - start[1]) * i / n))
    canvas.end()


def shown(canvas: Canvas) -> np.ndarray:
    return canvas.render(np.full((H, W, 3), 128, np.uint8))


def test_strokes_are_data_with_colour_width_points():
    c = Canvas(W, H)
    line(c, GREEN, (100, 100), (200, 100))
    assert len(c.strokes) == 1
    s = c.strokes[0]
    assert isinstance(s, Stroke) and s.color == GREEN and s.width == 6 and not s.erase
    assert s.points[0] == (100.0, 100.0) and s.points[-1] == (200.0, 100.0)


def test_render_shows_strokes_in_their_colours_and_leaves_the_rest():
    c = Canvas(W, H)
    line(c, GREEN, (100, 100), (300, 100))
    line(c, RED, (100, 300), (300, 300))
    frame = shown(c)
    assert tuple(frame[100, 200]) == GREEN
    assert tuple(frame[300, 200]) == RED
    assert tuple(frame[200, 200]) == (128, 128, 128)
    assert tuple(frame[100, 350]) == (128, 128, 128)


def test_fast_stroke_stays_connected():
    # Two samples 300 px apart (a fast finger between frames) still make one unbroken line.
    c = Canvas(W, H)
    c.begin(BLACK, 6)
    c.add((50, 240))
    c.add((350, 240))
    c.end()
    assert c.mask[240, 50:351].all()
    assert len(c.strokes[0].points) >= 100  # the gap was filled with points


def test_undo_removes_last_stroke_and_eraser_undo_restores_ink():
    c = Canvas(W, H)
    line(c, BLACK, (100, 200), (500, 200))
    line(c, GREEN, (300, 50), (300, 400))
    line(c, BLACK, (100, 200), (500, 200), width=ERASER_WIDTH, erase=True)
    assert not c.mask[200, 150]               # erased
    assert c.mask[100, 300]                   # the green line away from the eraser is kept
    assert c.undo()
    assert c.mask[200, 150]                   # the erase is undone: ink is back
    assert c.undo()
    assert not c.mask[100, 300]               # green stroke gone
    assert c.undo()
    assert c.is_blank() and not c.strokes
    assert not c.undo()


def test_undo_while_drawing_drops_the_open_stroke():
    c = Canvas(W, H)
    line(c, BLACK, (100, 100), (200, 100))
    c.begin(RED, 6)
    c.add((100, 300))
    c.add((200, 300))
    assert c.drawing
    c.undo()
    assert not c.drawing and len(c.strokes) == 1
    assert not c.mask[300, 150] and c.mask[100, 150]


def test_clear_and_empty_stroke_dropped():
    c = Canvas(W, H)
    line(c, BLACK, (100, 100), (200, 100))
    c.begin(RED)
    c.end()  # no points: not a stroke
    assert len(c.strokes) == 1
    c.clear()
    assert c.is_blank() and c.strokes == []
    assert (shown(c) == 128).all()


def test_clear_is_one_undo_step_and_redo_steps_forward_again():
    c = Canvas(W, H)
    assert not c.can_undo and not c.can_redo and not c.clear()
    line(c, BLACK, (100, 100), (200, 100))
    line(c, RED, (100, 300), (200, 300))
    before = shown(c).copy()
    version = c.version
    assert c.clear() and c.is_blank() and c.version > version
    assert c.can_undo and not c.can_redo
    version = c.version
    assert c.undo()                              # one undo brings every stroke back
    assert c.version > version and len(c.strokes) == 2
    assert (shown(c) == before).all()
    assert c.can_redo
    assert c.redo() and c.is_blank()             # the clear again
    assert c.undo() and c.undo()                 # back through the clear, then the red stroke
    assert c.mask[100, 150] and not c.mask[300, 150]
    assert c.redo() and c.mask[300, 150]         # the red stroke again
    version = c.version
    assert c.redo() and c.is_blank() and c.version > version
    assert not c.redo() and not c.can_redo


def test_a_new_stroke_empties_redo_but_an_empty_one_does_not():
    c = Canvas(W, H)
    line(c, BLACK, (100, 100), (200, 100))
    line(c, RED, (100, 300), (200, 300))
    assert c.undo() and c.can_redo
    c.begin(GREEN)
    c.end()                                      # no points: nothing drawn, redo stays
    assert c.can_redo
    line(c, GREEN, (300, 300), (400, 300))
    assert not c.can_redo and not c.redo()
    assert c.undo() and c.undo() and c.is_blank() and not c.can_undo


def test_cancel_drops_the_open_stroke_without_a_redo():
    c = Canvas(W, H)
    line(c, BLACK, (100, 100), (200, 100))
    c.begin(BLACK, ERASER_WIDTH, erase=True)
    c.add((100, 100))
    c.add((200, 100))
    assert not c.mask[100, 150]
    version = c.version
    c.cancel()
    assert c.mask[100, 150] and c.version > version and not c.drawing
    assert not c.can_redo and len(c.strokes) == 1
    assert c.undo() and c.is_blank()


def test_export_crops_pads_square_and_keeps_colours():
    c = Canvas(W, H)
    # A wide green rectangle outline in the lower right of the view.
    corners = [(400, 300), (600, 300), (600, 400), (400, 400), (400, 300)]
    for a, b in zip(corners, corners[1:]):
        line(c, GREEN, a, b)
    img = c.export()
    assert isinstance(img, Image.Image) and img.size == (512, 512) and img.mode == "RGB"
    a = np.asarray(img).astype(int)
    ink = (np.abs(a - 255).sum(axis=2) > 60)
    ys, xs = np.nonzero(ink)
    # The 200 px wide sketch fills the width but for the margin, centred.
    width, height = xs.max() - xs.min(), ys.max() - ys.min()
    assert 0.65 * 512 < width < 0.85 * 512
    assert abs(height / width - 100 / 200) < 0.06
    assert abs((xs.max() + xs.min()) / 2 - 256) < 6 and abs((ys.max() + ys.min()) / 2 - 256) < 6
    assert xs.min() > 20 and ys.min() > 20
    # The paper is white and the line is green.
    assert (a[0, 0] == 255).all() and (a[256, 256] == 255).all()
    rgb = a[ys[len(ys) // 2], xs[len(xs) // 2]]
    assert rgb[1] > rgb[0] + 60 and rgb[1] > rgb[2] + 60
    # The outline is a closed ring: the middle row crosses ink exactly twice (left and right).
    row = ink[256]
    assert np.count_nonzero(np.diff(row.astype(int)) == 1) == 2


def test_export_leaves_out_erased_ink():
    c = Canvas(W, H)
    line(c, BLACK, (100, 100), (200, 100))
    line(c, BLACK, (400, 400), (500, 400))
    line(c, BLACK, (380, 400), (520, 400), width=ERASER_WIDTH, erase=True)
    img = np.asarray(c.export())
    ys, xs = np.nonzero(img.min(axis=2) < 200)
    # Only the first line is left, so it is the one cropped to: a flat line across the middle.
    assert ys.max() - ys.min() < 60 and xs.max() - xs.min() > 300


def test_blank_export_refused():
    c = Canvas(W, H)
    with pytest.raises(BlankSketchError):
        c.export()
    line(c, RED, (100, 100), (200, 100))
    line(c, RED, (80, 100), (220, 100), width=ERASER_WIDTH, erase=True)
    with pytest.raises(BlankSketchError, match="blank"):
        c.export()


def test_points_outside_the_view_are_clamped():
    c = Canvas(W, H)
    c.begin(BLACK)
    c.add((-50, 100))
    c.add((700, 100))
    c.end()
    xs = [p[0] for p in c.strokes[0].points]
    assert min(xs) == 0 and max(xs) == W - 1


def test_render_size_mismatch_is_an_error():
    with pytest.raises(ValueError):
        Canvas(W, H).render(np.zeros((100, 100, 3), np.uint8))
