"""Draw a training log as a PNG: python -m tools.plot_log [output/train_log.csv] [--out curves.png]

Four panels against the training step: loss, learning rate, step time (ms) and mAP (when the run
evaluated with run_eval). Drawn with OpenCV and numpy only.
"""
import argparse
import math
import os
import sys

import cv2
import numpy as np

from src.training.log import COLUMNS, FILE_NAME, read_rows

PANEL_W, PANEL_H = 520, 340
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 72, 16, 34, 40
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GRID, AXIS, TEXT = (255, 255, 255), (225, 225, 225), (90, 90, 90), (30, 30, 30)
PANELS = (("loss", "loss", (180, 90, 30)), ("lr", "learning rate", (40, 150, 40)),
          ("step_time_ms", "step time (ms)", (30, 110, 220)), ("map", "mAP", (160, 40, 160)))


def series(rows, column):
    """(global steps, values) of the rows where ``column`` is filled, as float arrays."""
    index = COLUMNS.index(column)
    points = [(float(row[2]), float(row[index])) for row in rows if row[index]]
    points = [(x, y) for x, y in points if math.isfinite(y)]
    return np.array([p[0] for p in points], np.float64), np.array([p[1] for p in points], np.float64)


def nice_ticks(low, high, count=5):
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        low, high = low - max(abs(low) * 0.1, 1e-12), high + max(abs(high) * 0.1, 1e-12)
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    return [first + k * step for k in range(int(math.ceil((high - first) / step - 1e-9)) + 1)]


def tick_text(value):
    """Short label of a tick value."""
    return "%.3g" % value if value else "0"


PLOT_BOX = (MARGIN_LEFT, PANEL_W - MARGIN_RIGHT, MARGIN_TOP, PANEL_H - MARGIN_BOTTOM)


def pixel_mapper(x_ticks, y_ticks):
    """A function mapping data (x, y) arrays to pixel coordinates [..., 2] of the plot area."""
    left, right, top, bottom = PLOT_BOX

    def to_px(x, y):
        """Pixel coordinates [..., 2] of data points."""
        px = left + (np.asarray(x, np.float64) - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (right - left)
        py = bottom - (np.asarray(y, np.float64) - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (bottom - top)
        return np.stack([px, py], axis=-1)
    return to_px


def draw_grid(panel, x_ticks, y_ticks, to_px):
    """Grid lines with their tick labels, the frame of the plot area and the x-axis name."""
    left, right, top, bottom = PLOT_BOX
    for value in y_ticks:
        y = int(round(to_px(x_ticks[0], value)[1]))
        cv2.line(panel, (left, y), (right, y), GRID, 1)
        cv2.putText(panel, tick_text(value), (4, y + 4), FONT, 0.38, TEXT, 1, cv2.LINE_AA)
    for value in x_ticks:
        x = int(round(to_px(value, y_ticks[0])[0]))
        cv2.line(panel, (x, top), (x, bottom), GRID, 1)
        cv2.putText(panel, tick_text(value), (x - 12, bottom + 16), FONT, 0.38, TEXT, 1, cv2.LINE_AA)
    cv2.rectangle(panel, (left, top), (right, bottom), AXIS, 1)
    cv2.putText(panel, "step", (right - 32, PANEL_H - 6), FONT, 0.4, AXIS, 1, cv2.LINE_AA)


def draw_panel(xs, ys, title, color, x_range):
    """One panel: title, grid, labelled axes and the curve (markers when there are few points)."""
    panel = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    cv2.putText(panel, title, (MARGIN_LEFT, 22), FONT, 0.55, TEXT, 1, cv2.LINE_AA)
    if not len(xs):
        cv2.putText(panel, "no data", (PANEL_W // 2 - 30, PANEL_H // 2), FONT, 0.5, AXIS, 1, cv2.LINE_AA)
        return panel
    x_ticks, y_ticks = nice_ticks(*x_range), nice_ticks(float(ys.min()), float(ys.max()))
    to_px = pixel_mapper(x_ticks, y_ticks)
    draw_grid(panel, x_ticks, y_ticks, to_px)
    points = np.round(to_px(xs, ys) * 16).astype(np.int32)
    cv2.polylines(panel, [points.reshape(-1, 1, 2)], False, color, 2, cv2.LINE_AA, shift=4)
    if len(xs) <= 40:
        for point in points:
            cv2.circle(panel, tuple(int(v) for v in point), 4 * 16, color, cv2.FILLED, cv2.LINE_AA, shift=4)
    return panel


def plot(rows):
    """The 2x2 figure of a log's rows as a BGR image."""
    steps = [float(row[2]) for row in rows]
    x_range = (0.0, max(steps) if steps else 1.0)
    panels = [draw_panel(*series(rows, column), title, color, x_range) for column, title, color in PANELS]
    gap = np.full((PANEL_H, 8, 3), 255, np.uint8)
    return np.vstack([np.hstack([panels[0], gap, panels[1]]), np.hstack([panels[2], gap, panels[3]])])


def main(argv=None):
    """Command line: read the CSV, write the PNG, print where."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=os.path.join("output", FILE_NAME), help="training log CSV")
    parser.add_argument("--out", default=None, help="PNG to write (default: the CSV's name with .png)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.csv):
        print("error: training log not found: %s" % args.csv, file=sys.stderr)
        return 1
    rows = read_rows(args.csv)
    if not rows:
        print("error: %s: no rows (expected the header %s)" % (args.csv, ",".join(COLUMNS)), file=sys.stderr)
        return 1
    out = args.out or os.path.splitext(args.csv)[0] + ".png"
    if not out.lower().endswith(".png"):
        print("error: --out must name a .png file, got %s" % out, file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if not cv2.imwrite(out, plot(rows)):
        print("error: cannot write %s" % out, file=sys.stderr)
        return 1
    print("%d rows of %s drawn to %s" % (len(rows), args.csv, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
