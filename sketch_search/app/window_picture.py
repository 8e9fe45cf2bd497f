"""The air canvas window's picture: the view (canvas over the camera frame, or the open photo),
the controls and tiles, the pen's cursor and rings, the pointer, the toast, the status bar and the
results panel. No decisions: it draws what the loop and `Commands` hold, caching what is costly
(the panel, fitted thumbnails, the open photo's picture).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from sketch import overlay
from sketch.air_pen import DRAWING_TOOLS, AirPen
from sketch.controls import ControlKind
from sketch.screen import Mode
from sketch_search.app.commands import Commands
from sketch_search.common.errors import SketchSearchError
from sketch_search.common.files import write_atomically
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)


class WindowPicture:
    """Draws the window for `commands` (its screen, pointer holds and open photo)."""

    def __init__(self, commands: Commands):
        self.commands = commands
        self._panel: tuple[object, np.ndarray] | None = None   # the view it shows, its picture
        self._photo_cache: tuple[tuple, np.ndarray] | None = None
        self._tiles: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}   # fitted thumbnails

    def compose(self, frame: np.ndarray, pen: AirPen, drawing: bool, toast: tuple[str, bool] | None,
                status: tuple[str, bool], fps: float,
                panel_view: overlay.ResultsView | None) -> np.ndarray:
        """The window's picture for `frame`; `drawing`: `pen` draws (else it only points, over a photo)."""
        screen, presser = self.commands.screen, self.commands.presser
        canvas = self.commands.canvas
        font = max(0.5, 0.9 * screen.scale)
        view = self._photo_picture(font) if screen.mode is Mode.PHOTO else canvas.render(frame.copy())
        if screen.mode is Mode.HELP:
            overlay.draw_card(view, overlay.HELP_CARD, font, bottom=screen.controls()[0].rect[1])
        elif screen.mode is Mode.CONFIRM_QUIT:
            overlay.draw_confirm_quit(view, font)
        over = presser.over.name if presser.over is not None else None
        for control in screen.controls():
            shown = screen.control_named(control.name)
            if shown is not None and shown.kind is ControlKind.RESULT:
                photo = screen.results[shown.rank - 1] if shown.rank <= len(screen.results) else None
                overlay.draw_tile(view, control, photo, font, control.name == over,
                                  self._tile_picture(photo, control.rect[2]))
            else:
                progress = presser.progress if control.name == presser.holding else None
                overlay.draw_button(view, control, font, control.name == over, progress)
        if drawing:   # over a photo only the pointer shows
            draw_pen(view, pen)
        if pen.pointer is not None:
            overlay.draw_pointer(view, pen.pointer, presser.progress, int(24 * screen.scale))
        if toast is not None:
            overlay.draw_toast(view, *toast)
        bar = overlay.render_bar(view.shape[1], pen.tool.name, pen.tool.color, status[0], fps, status[1])
        height = view.shape[0] + overlay.BAR_HEIGHT
        if self._panel is None or self._panel[0] is not panel_view or self._panel[1].shape[0] != height:
            self._panel = (panel_view, overlay.render_panel(height, panel_view))
        return overlay.compose(view, self._panel[1], bar)

    def _tile_picture(self, photo: overlay.ResultPhoto | None, side: int) -> np.ndarray | None:
        """The match's thumbnail fitted to its tile, made once per thumbnail and size."""
        if photo is None or photo.thumbnail is None:
            return None
        key = (id(photo.thumbnail), side)
        cached = self._tiles.get(key)
        if cached is None or cached[0] is not photo.thumbnail:
            if len(self._tiles) > 4 * 5:   # a few searches' worth
                self._tiles.clear()
            cached = (photo.thumbnail, overlay.fit_image(photo.thumbnail, side, (0, 0, 0)))
            self._tiles[key] = cached
        return cached[1]

    def _photo_picture(self, font: float) -> np.ndarray:
        """The open photo fitted to the view, with its rank, name, date and score."""
        screen, opened, canvas = self.commands.screen, self.commands.opened, self.commands.canvas
        photo = screen.photo
        lines = [f"{screen.rank} of {len(screen.browsing)}:  {photo.name}"]
        details = f"score {photo.score:.3f}"
        if opened is not None and opened.date is not None:
            when = "taken" if opened.date_source == "taken" else "file date"
            details = f"{when} {opened.date:%Y-%m-%d %H:%M}    {details}"
        lines.append(details)
        key = (id(opened), screen.rank, details)
        if self._photo_cache is None or self._photo_cache[0] != key:
            image = opened.image if opened is not None else None
            error = display_name(opened.error) if opened is not None and opened.error else None
            picture = overlay.render_photo((canvas.width, canvas.height), image, lines, font, error)
            self._photo_cache = (key, picture)
        return self._photo_cache[1].copy()


def draw_pen(view: np.ndarray, pen: AirPen) -> None:
    """The pen's cursor, or the ring of the save or the clear gesture being held; a "?" on each
    hand whose read was declined this frame."""
    for point in pen.unsure_points:
        overlay.draw_unsure(view, point)
    if pen.clear_points is not None and pen.clear_progress is not None:
        for point in pen.clear_points:
            overlay.draw_hold_ring(view, point, pen.clear_progress)
    elif pen.cursor is not None:
        progress = pen.hold_progress
        if progress is not None:
            overlay.draw_hold_ring(view, pen.cursor, progress)
        elif pen.gesture in DRAWING_TOOLS:
            radius = max(4, pen.tool.width // 2) if pen.tool.erase else pen.tool.width
            overlay.draw_cursor(view, pen.cursor, pen.tool.color, radius)


def write_picture(path: Path, image: np.ndarray) -> None:
    """The window's picture as a .png or .jpg file (--screenshot)."""
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise SketchSearchError(f"--screenshot {path}: use a .png or .jpg file name")

    def write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), image):
            raise SketchSearchError(f"--screenshot {path}: could not write the picture")
    write_atomically(path, write)
    log.info("window picture saved: %s", path)
