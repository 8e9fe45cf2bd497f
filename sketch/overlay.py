"""What the window shows, drawn with OpenCV: the live view with its cursor and save ring, a status
bar under it, and a side panel with the help or the last search's results.

Layout (pixels):  [ live view (640 x h) | side panel (PANEL_WIDTH) ]
                  [ status bar (BAR_HEIGHT), full width             ]
The side panel changes only when a search or a preview ends, so callers render it once and
reuse it. A preview (matches for the sketch itself while drawing) is marked as such across the
panel's top until a save's final results replace it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sketch.controls import ControlKind

PANEL_WIDTH = 480
BAR_HEIGHT = 48
GAP = 8
BIG_TILE = 140          # sketch and generated image
TILE = 148              # gallery photos, three to a row
TILE_COLUMNS = 3
RESULTS_TOP = 196       # y of the first gallery row in the panel

FONT = cv2.FONT_HERSHEY_SIMPLEX
PANEL_BG = (38, 38, 38)
BAR_BG = (24, 24, 24)
TEXT = (235, 235, 235)
DIM = (150, 150, 150)
ACCENT = (60, 200, 255)   # the save ring and the results' scores (amber)
ERROR = (80, 80, 255)
PREVIEW_BG = (0, 110, 160)   # the preview banner (dark amber)

PREVIEW_LABEL = "PREVIEW - the sketch itself; save for the full search"
LIVE_LABEL = "LIVE - full search of the drawing so far; save to keep it"

HELP_LINES = [
    "Draw in the air with your index finger:",
    "  2 fingers   black pen",
    "  3 fingers   green pen",
    "  4 fingers   red pen",
    "  5 fingers   eraser",
    "  fist / no hand   pen up",
    "  1 finger, hold   save and search",
    "  both hands open, hold   clear",
    "",
    "A fist moves the pointer (white dot): rest it",
    "on a button for a second to press it.",
    "",
    "Keys:  R clear   Z undo   Y redo   S save",
    "       H help   1-5 open a match   N / P next,",
    "       previous   B back   M show on phone",
    "       Q quit   Esc back or quit",
]


@dataclass(frozen=True)
class ResultPhoto:
    """One match as the window shows it: the photo's path in the gallery (to open it), its name
    as shown (display_name), its cosine score and a thumbnail (None: gone since indexing)."""
    path: Path
    name: str
    score: float
    thumbnail: np.ndarray | None = None


@dataclass
class ResultsView:
    """One search's results, as images ready to paste (BGR arrays).

    `label`: None for a save's final results; PREVIEW_LABEL / LIVE_LABEL for matches shown while
    drawing (a preview has no generated image and no caption).
    """
    sketch: np.ndarray
    generated: np.ndarray | None
    caption: str
    photos: list[ResultPhoto] = field(default_factory=list)   # best first
    gallery_size: int = 0
    seconds: float = 0.0
    label: str | None = None
    total: int = 0          # photos of the gallery known, indexed or not (> gallery_size while indexing)


def text(image: np.ndarray, line: str, origin: tuple[int, int], scale: float = 0.5,
         color=TEXT, thickness: int = 1) -> None:
    cv2.putText(image, line, origin, FONT, scale, color, thickness, cv2.LINE_AA)


def fit_text(line: str, width: int, scale: float = 0.5) -> str:
    """Shorten `line` in the middle until it fits `width` pixels (long photo names)."""
    if cv2.getTextSize(line, FONT, scale, 1)[0][0] <= width:
        return line
    while len(line) > 4 and cv2.getTextSize(line + "...", FONT, scale, 1)[0][0] > width:
        middle = len(line) // 2
        line = line[:middle - 1] + line[middle + 1:]
    return line[:len(line) // 2] + "..." + line[len(line) // 2:]


def wrap_text(line: str, width: int, scale: float = 0.5, max_lines: int = 6) -> list[str]:
    words, lines, current = line.split(), [], ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if cv2.getTextSize(candidate, FONT, scale, 1)[0][0] <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = fit_text(lines[-1] + " ...", width, scale)
    return [fit_text(line, width, scale) for line in lines]


def fit_image(image: np.ndarray, side: int, background=(255, 255, 255)) -> np.ndarray:
    """`image` scaled to fit a `side` x `side` square, centred on `background`."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    tile = np.full((side, side, 3), background, np.uint8)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    tile[top:top + size[1], left:left + size[0]] = resized
    return tile


# -- live view ------------------------------------------------------------------------------------
def draw_cursor(view: np.ndarray, point: tuple[float, float], color, radius: int) -> None:
    center = (int(round(point[0])), int(round(point[1])))
    cv2.circle(view, center, radius + 2, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.circle(view, center, radius, color, 2, cv2.LINE_AA)


def draw_hold_ring(view: np.ndarray, point: tuple[float, float], progress: float) -> None:
    """The save gesture's ring: fills clockwise from the top while the gesture is held."""
    center = (int(round(point[0])), int(round(point[1])))
    cv2.circle(view, center, 28, (90, 90, 90), 4, cv2.LINE_AA)
    end = -90 + 360 * min(max(progress, 0.0), 1.0)
    cv2.ellipse(view, center, (28, 28), 0, -90, end, ACCENT, 6, cv2.LINE_AA)


def draw_unsure(view: np.ndarray, point: tuple[float, float]) -> None:
    """A quiet grey "?" on a hand whose fingers were not read (declined), with a light halo."""
    center = (int(round(point[0])), int(round(point[1])))
    _centred(view, "?", center, 1.0, (255, 255, 255), 5)
    _centred(view, "?", center, 1.0, (120, 120, 120), 2)


def draw_toast(view: np.ndarray, message: str, error: bool = False) -> None:
    """A one-line message across the top of the live view."""
    line = fit_text(message, view.shape[1] - 2 * GAP, 0.6)
    (w, h), _ = cv2.getTextSize(line, FONT, 0.6, 2)
    x = (view.shape[1] - w) // 2
    cv2.rectangle(view, (x - GAP, 8), (x + w + GAP, 8 + h + 2 * GAP), (0, 0, 0), -1)
    text(view, line, (x, 8 + h + GAP), 0.6, ERROR if error else TEXT, 2)


# -- status bar -----------------------------------------------------------------------------------
def render_bar(width: int, tool: str, tool_color, status: str, fps: float,
               status_is_error: bool = False) -> np.ndarray:
    bar = np.full((BAR_HEIGHT, width, 3), BAR_BG, np.uint8)
    swatch = (GAP, GAP, GAP + BAR_HEIGHT - 2 * GAP, BAR_HEIGHT - GAP)
    cv2.rectangle(bar, swatch[:2], swatch[2:], tool_color, -1)
    cv2.rectangle(bar, swatch[:2], swatch[2:], (255, 255, 255), 1)
    text(bar, tool, (swatch[2] + GAP, 30), 0.6, TEXT, 2)
    fps_text = f"{fps:4.1f} fps"
    fps_width = cv2.getTextSize(fps_text, FONT, 0.5, 1)[0][0]
    left = 200
    text(bar, fit_text(status, width - left - fps_width - 3 * GAP, 0.55), (left, 30), 0.55,
         ERROR if status_is_error else ACCENT, 1)
    text(bar, fps_text, (width - fps_width - GAP, 30), 0.5, DIM)
    return bar


# -- side panel -----------------------------------------------------------------------------------
def render_panel(height: int, results: ResultsView | None) -> np.ndarray:
    panel = np.full((height, PANEL_WIDTH, 3), PANEL_BG, np.uint8)
    if results is None:
        text(panel, "Sketch search", (GAP * 2, 36), 0.8, TEXT, 2)
        for i, line in enumerate(HELP_LINES):
            text(panel, line, (GAP * 2, 76 + 24 * i), 0.5, TEXT if i == 0 else DIM)
        return panel
    _draw_first_row(panel, results)
    _draw_matches(panel, height, results)
    return panel


def _draw_first_row(panel: np.ndarray, results: ResultsView) -> None:
    """Row 1: sketch and generated image, the caption beside them."""
    for column, (image, label) in enumerate([(results.sketch, "sketch"), (results.generated, "generated")]):
        x = GAP + column * (BIG_TILE + GAP)
        if image is None:  # a preview: no generated image yet
            panel[GAP:GAP + BIG_TILE, x:x + BIG_TILE] = (70, 70, 70)
            text(panel, "after the save", (x + 10, GAP + BIG_TILE // 2 + 5), 0.45, DIM)
        else:
            panel[GAP:GAP + BIG_TILE, x:x + BIG_TILE] = fit_image(image, BIG_TILE)
        text(panel, label, (x, GAP + BIG_TILE + 16), 0.45, DIM)
    caption_x = GAP + 2 * (BIG_TILE + GAP)
    caption_width = PANEL_WIDTH - caption_x - GAP
    text(panel, "caption", (caption_x, 22), 0.45, DIM)
    caption = results.caption or ("(after the save)" if results.generated is None else "(none)")
    for i, line in enumerate(wrap_text(caption, caption_width, 0.5, 5)):
        text(panel, line, (caption_x, 44 + 20 * i), 0.5, TEXT)
    text(panel, f"{results.seconds:.1f} s", (caption_x, GAP + BIG_TILE), 0.45, DIM)


def _draw_matches(panel: np.ndarray, height: int, results: ResultsView) -> None:
    """Rows 2-: the gallery's best matches with their cosine scores."""
    rows = max(0, (height - RESULTS_TOP) // (TILE + GAP))
    shown = results.photos[:rows * TILE_COLUMNS]
    heading = (f"top {len(results.photos)} of {results.gallery_size} photos"
               if results.gallery_size else "no gallery photos to compare with")
    if results.total > results.gallery_size:  # the gallery is still being indexed
        heading = f"top {len(results.photos)}, searched {results.gallery_size:,} of {results.total:,} photos"
    if results.label:  # matches while drawing: a banner above them says so
        cv2.rectangle(panel, (0, RESULTS_TOP - 24), (PANEL_WIDTH - 1, RESULTS_TOP - 2), PREVIEW_BG, -1)
        text(panel, fit_text(results.label, PANEL_WIDTH - 2 * GAP, 0.45), (GAP, RESULTS_TOP - 8), 0.45, TEXT)
    else:
        text(panel, heading, (GAP, RESULTS_TOP - 8), 0.5, TEXT)
    for i, photo in enumerate(shown):
        name, score, thumb = photo.name, photo.score, photo.thumbnail
        x = GAP + (i % TILE_COLUMNS) * (TILE + GAP)
        y = RESULTS_TOP + (i // TILE_COLUMNS) * (TILE + GAP)
        if thumb is None:  # removed since indexing
            panel[y:y + TILE, x:x + TILE] = (90, 90, 90)
        else:
            panel[y:y + TILE, x:x + TILE] = fit_image(thumb, TILE, (0, 0, 0))
        # Name above, rank and cosine score below, each on a dark strip over the photo.
        cv2.rectangle(panel, (x, y), (x + TILE - 1, y + 19), (0, 0, 0), -1)
        cv2.rectangle(panel, (x, y + TILE - 22), (x + TILE - 1, y + TILE - 1), (0, 0, 0), -1)
        text(panel, fit_text(name, TILE - 8, 0.4), (x + 4, y + 14), 0.4, TEXT)
        text(panel, f"{i + 1}. {score:.3f}", (x + 4, y + TILE - 6), 0.5, ACCENT, 1)
    if len(results.photos) > len(shown):
        text(panel, f"+{len(results.photos) - len(shown)} more in the JSON", (GAP, height - GAP), 0.45, DIM)


def compose(view: np.ndarray, panel: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """The whole window: view and panel side by side, the bar under both."""
    h, w = view.shape[:2]
    window = np.empty((h + BAR_HEIGHT, w + PANEL_WIDTH, 3), np.uint8)
    window[:h, :w] = view
    window[:, w:] = panel
    window[h:, :w] = bar
    return window


# -- touchless controls, drawn inside the live view ----------------------------------------------
BUTTON_BG = (48, 48, 48)
BUTTON_EDGE = (235, 235, 235)
BUTTON_OFF = (90, 90, 90)
QUIT_BG = (40, 40, 170)
POINTER = (255, 255, 255)

HELP_CARD = [
    ("Draw in the air, find the photo", True),
    ("2 / 3 / 4 fingers: draw black / green / red", False),
    ("5 fingers: erase     1 finger, hold: search", False),
    ("Both hands open, hold: clear", False),
    ("Fist: move the pointer (white dot)", False),
    ("Rest it on a button 1 s: press it", False),
    ("Matches appear at the bottom: hold one to open", False),
    ("Start drawing, or hold Close", True),
]


def _blend(view: np.ndarray, rect, color, alpha: float) -> None:
    x, y, w, h = rect
    part = view[y:y + h, x:x + w]
    part[:] = (part * (1 - alpha) + np.array(color, np.float32) * alpha).astype(np.uint8)


def _centred(view: np.ndarray, line: str, center: tuple[int, int], scale: float, color,
             thickness: int = 2) -> None:
    (w, h), _ = cv2.getTextSize(line, FONT, scale, thickness)
    text(view, line, (center[0] - w // 2, center[1] + h // 2), scale, color, thickness)


def draw_button(view: np.ndarray, control, font_scale: float, hovered: bool = False,
                progress: float | None = None) -> None:
    """A control as a large labelled button ("\n" splits the label into lines); a disabled one
    greyed, with its reason under the label; a held one fills from the bottom as the hold goes."""
    x, y, w, h = control.rect
    fill = QUIT_BG if control.name == ControlKind.QUIT else BUTTON_BG
    _blend(view, control.rect, fill if control.enabled else (30, 30, 30), 0.8)
    if progress is not None and control.enabled:
        filled = int(round(h * min(max(progress, 0.0), 1.0)))
        if filled > 0:
            _blend(view, (x, y + h - filled, w, filled), ACCENT, 0.45)
    edge = ACCENT if hovered and control.enabled else (BUTTON_EDGE if control.enabled else BUTTON_OFF)
    cv2.rectangle(view, (x, y), (x + w - 1, y + h - 1), edge, 3 if hovered else 2, cv2.LINE_AA)
    label_color = TEXT if control.enabled else BUTTON_OFF
    lines = control.label.split("\n")
    line_h = int(34 * font_scale)
    middle = y + h // 2 - (0 if control.enabled or not control.reason else h // 6)
    for i, line in enumerate(lines):
        offset = int((i - (len(lines) - 1) / 2) * line_h)
        _centred(view, fit_text(line, w - 8, font_scale), (x + w // 2, middle + offset),
                 font_scale, label_color)
    if not control.enabled and control.reason:
        small = font_scale * 0.55
        for i, line in enumerate(wrap_text(control.reason, w - 8, small, 2)):
            _centred(view, line, (x + w // 2, y + h // 2 + h // 6 + i * int(22 * small / 0.45)),
                     small, (200, 200, 200), 1)


def draw_tile(view: np.ndarray, control, photo: ResultPhoto | None, font_scale: float,
              hovered: bool = False, picture: np.ndarray | None = None) -> None:
    """A match as a tile: its thumbnail filling the tile, rank and score on a strip.
    `picture`: the thumbnail already fitted to the tile (callers keep it between frames)."""
    x, y, w, h = control.rect
    if photo is not None and photo.thumbnail is not None:
        if picture is None or picture.shape[:2] != (h, w):
            picture = fit_image(photo.thumbnail, w, (0, 0, 0))[:h, :w]
        view[y:y + h, x:x + w] = picture
    else:
        view[y:y + h, x:x + w] = (90, 90, 90)
    strip = max(18, h // 5)
    cv2.rectangle(view, (x, y + h - strip), (x + w - 1, y + h - 1), (0, 0, 0), -1)
    score = f"{control.label}. {photo.score:.2f}" if photo is not None else control.label
    _centred(view, score, (x + w // 2, y + h - strip // 2), font_scale * 0.7, ACCENT, 2)
    edge = ACCENT if hovered else (255, 255, 255)
    cv2.rectangle(view, (x, y), (x + w - 1, y + h - 1), edge, 3 if hovered else 2, cv2.LINE_AA)


def draw_pointer(view: np.ndarray, point: tuple[float, float], progress: float | None,
                 radius: int = 30) -> None:
    """The pointer: a white dot with a dark edge; while a control is held, a ring fills round it."""
    center = (int(round(point[0])), int(round(point[1])))
    if progress is not None:
        cv2.circle(view, center, radius, (60, 60, 60), 5, cv2.LINE_AA)
        end = -90 + 360 * min(max(progress, 0.0), 1.0)
        cv2.ellipse(view, center, (radius, radius), 0, -90, end, ACCENT, 6, cv2.LINE_AA)
    cv2.circle(view, center, 9, (0, 0, 0), -1, cv2.LINE_AA)
    cv2.circle(view, center, 6, POINTER, -1, cv2.LINE_AA)


def render_photo(size: tuple[int, int], image: np.ndarray | None, lines: list[str],
                 font_scale: float, error: str | None = None) -> np.ndarray:
    """The open photo, fitted and centred on black, with its name, date and score along the
    bottom; `image` None: still decoding, or `error`."""
    width, height = size
    view = np.zeros((height, width, 3), np.uint8)
    if image is not None:
        h, w = image.shape[:2]
        top, left = (height - h) // 2, (width - w) // 2
        view[top:top + h, left:left + w] = image
    else:
        message = error or "opening the photo ..."
        for i, line in enumerate(wrap_text(message, width - 80, font_scale * 0.8, 3)):
            _centred(view, line, (width // 2, height // 2 + i * int(34 * font_scale)),
                     font_scale * 0.8, ERROR if error else TEXT)
    line_h = int(30 * font_scale)
    band = line_h * len(lines) + 12
    _blend(view, (0, height - band, width, band), (0, 0, 0), 0.65)
    for i, line in enumerate(lines):
        text(view, fit_text(line, width - 24, font_scale * 0.75), (12, height - band + 6 + line_h * (i + 1) - 8),
             font_scale * 0.75, TEXT if i == 0 else ACCENT, 2)
    return view


def draw_card(view: np.ndarray, lines: list[tuple[str, bool]], font_scale: float,
              bottom: int | None = None) -> None:
    """A dark card over the view, above y = `bottom` (where its Close button starts), with lines
    of text (bold ones in the accent)."""
    height, width = view.shape[:2]
    margin = int(24 * font_scale)
    line_h = int(34 * font_scale)
    bottom = height if bottom is None else bottom
    card_h = min(bottom - 2 * margin, line_h * len(lines) + 2 * margin)
    rect = (margin, max(margin, (bottom - card_h) // 2), width - 2 * margin, card_h)
    _blend(view, rect, (20, 20, 20), 0.85)
    x, y, w, h = rect
    cv2.rectangle(view, (x, y), (x + w - 1, y + h - 1), ACCENT, 2, cv2.LINE_AA)
    for i, (line, strong) in enumerate(lines):
        scale = font_scale * (0.8 if strong else 0.68)
        text(view, fit_text(line, w - 2 * margin, scale), (x + margin, y + margin + line_h * i + line_h // 2),
             scale, ACCENT if strong else TEXT, 2)


def draw_confirm_quit(view: np.ndarray, font_scale: float) -> None:
    """Dim the view and ask: the Quit and Stay buttons are drawn over it by the caller."""
    height, width = view.shape[:2]
    _blend(view, (0, 0, width, height), (0, 0, 0), 0.55)
    _centred(view, "Quit sketch search?", (width // 2, int(height * 0.25)), font_scale * 1.1, TEXT, 2)
    _centred(view, "hold Quit again to confirm", (width // 2, int(height * 0.25) + int(40 * font_scale)),
             font_scale * 0.75, ACCENT, 2)
