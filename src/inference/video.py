"""Detection on a video file (infer.py --input=clip.mp4): every frame detected, drawn and written to a new
video of the same size and frame rate, and every frame's detections to one json.

Frames are read with ``cv2.VideoCapture`` and written with ``cv2.VideoWriter`` in the input's codec
(its FOURCC) where this OpenCV can encode it, otherwise in the container's usual one
(``FALLBACK_CODECS``, said in one line). The video is written under a temporary name and renamed
when complete, the json atomically, so neither is ever seen half-written.

The detector is anything that maps an HWC uint8 BGR frame to a result with ``to_coco(image_id)`` and
``draw(frame)``: :class:`src.api.Detector` (this module sits below the API and does not import it).
"""
import contextlib
import math
import os
import sys
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from src.errors import UserError
from src.inference.coco_eval import write_json_atomic

# The codec written when the input's cannot be: one that OpenCV's FFmpeg backend encodes into each container.
FALLBACK_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG",
                   ".webm": "VP80"}
VIDEO_EXTENSIONS = tuple(FALLBACK_CODECS)
DEFAULT_FPS = 25.0


class Video(NamedTuple):
    """An opened input video: its capture (positioned after ``first_frame``), frame rate, FOURCC code and the
    frame count its container states (0 when unknown)."""
    path: str
    capture: cv2.VideoCapture
    fps: float
    fourcc: str
    frame_count: int
    first_frame: np.ndarray


class VideoRun(NamedTuple):
    """What :func:`detect_video` wrote: frames, detections, the drawn video and the json."""
    frames: int
    detections: int
    video_path: str
    json_path: str


def is_video(path: str) -> bool:
    """True for a file whose extension is one of ``VIDEO_EXTENSIONS``."""
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


@contextlib.contextmanager
def native_stderr_silenced():
    """Point the process's stderr (file descriptor 2) at /dev/null for a while: OpenCV's FFmpeg backend
    prints its own lines there (a container it cannot parse, a codec it cannot encode), and the one-line
    message of this module replaces them."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def fourcc_text(code: float) -> str:
    """The four characters of a ``CAP_PROP_FOURCC`` value (``MJPG``); empty when it holds none."""
    text = "".join(chr((int(code) >> (8 * k)) & 0xFF) for k in range(4))
    return text if text.isascii() and text.isprintable() and text.strip() else ""


def frame_rate(capture, path: str) -> float:
    """The capture's frames per second, or ``DEFAULT_FPS`` (said in one line) when the file states none."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    if fps and math.isfinite(fps) and fps > 0:
        return float(fps)
    print("%s states no frame rate: writing %g frames per second" % (path, DEFAULT_FPS), file=sys.stderr)
    return DEFAULT_FPS


def open_video(path: str) -> Video:
    """Open ``path`` and read its first frame; a file OpenCV cannot open, or one without frames, is a
    one-line UserError naming it."""
    with native_stderr_silenced():
        capture = cv2.VideoCapture(path)
        ok, first = capture.read() if capture.isOpened() else (False, None)
    if not capture.isOpened():
        raise UserError("%s: not a video OpenCV can read" % path)
    if not ok or first is None:
        capture.release()
        raise UserError("%s: the video has no frames that can be read" % path)
    return Video(path, capture, frame_rate(capture, path), fourcc_text(capture.get(cv2.CAP_PROP_FOURCC)),
                 max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0), first)


def frames(video: Video):
    """Every frame of ``video``, the first one included, until the capture gives no more."""
    yield video.first_frame
    while True:
        ok, frame = video.capture.read()
        if not ok:
            return
        yield frame


def open_writer(path: str, codec: str, fps: float, size: tuple):
    """A ``cv2.VideoWriter`` of ``path`` in ``codec`` (four characters), or None when OpenCV cannot write it."""
    with native_stderr_silenced():
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps, size)
    if writer.isOpened():
        return writer
    writer.release()
    return None


def video_writer(video: Video, path: str, size: tuple):
    """The writer of the drawn video: the input's codec where OpenCV can write it, else the container's
    ``FALLBACK_CODECS`` entry, said in one line; neither is a one-line UserError."""
    writer = open_writer(path, video.fourcc, video.fps, size) if video.fourcc else None
    if writer is not None:
        return writer
    fallback = FALLBACK_CODECS[os.path.splitext(path)[1].lower()]
    print("%s: this OpenCV cannot write its codec %s; writing %s instead"
          % (video.path, video.fourcc or "(unnamed)", fallback), file=sys.stderr)
    writer = open_writer(path, fallback, video.fps, size)
    if writer is None:
        raise UserError("cannot write video %s: OpenCV has no encoder for %s here" % (path, fallback))
    return writer


def output_paths(input_path: str, out_dir: str) -> tuple:
    """(drawn video, json) in ``out_dir``: the input's own name and ``<stem>.detections.json``."""
    name = os.path.basename(input_path)
    video_path = os.path.join(out_dir, name)
    if os.path.abspath(video_path) == os.path.abspath(input_path):
        raise UserError("--output must not be the folder of the input video (it would be replaced)")
    return video_path, os.path.join(out_dir, os.path.splitext(name)[0] + ".detections.json")


def partial_path(video_path: str) -> str:
    """The temporary name a video is written under: ``clip.partial.mp4`` (the extension picks the container)."""
    stem, extension = os.path.splitext(video_path)
    return stem + ".partial" + extension


def progress(video: Video, show: bool):
    """A tqdm bar over the frames of ``video`` on stderr, counting frames per second."""
    return tqdm(frames(video), total=video.frame_count or None, desc="detecting", unit="frame", file=sys.stderr,
                disable=not show)


def write_drawn_frames(detector, video: Video, writer, show_progress: bool) -> list:
    """Detect, draw and write every frame; returns the json records ``{"frame", "time_s", "detections"}``."""
    records = []
    for index, frame in enumerate(progress(video, show_progress)):
        result = detector(frame)
        writer.write(result.draw(frame))
        records.append({"frame": index, "time_s": round(index / video.fps, 6), "detections": result.to_coco(index)})
    return records


def remove_quietly(path: str) -> None:
    """Remove ``path`` if it is there."""
    with contextlib.suppress(OSError):
        os.remove(path)


def detect_video(detector, video: Video, out_dir: str, classes, show_progress: bool = False) -> VideoRun:
    """Write ``out_dir/<name>`` (every frame drawn) and ``out_dir/<stem>.detections.json``: ``{"video",
    "fps", "categories", "frames": [{"frame", "time_s", "detections": [COCO dicts, image_id = frame]}]}``,
    category ids being indices in ``classes``."""
    video_path, json_path = output_paths(video.path, out_dir)
    os.makedirs(out_dir, exist_ok=True)
    temporary = partial_path(video_path)
    height, width = video.first_frame.shape[:2]
    writer = video_writer(video, temporary, (width, height))
    try:
        records = write_drawn_frames(detector, video, writer, show_progress)
    except BaseException:
        writer.release()
        remove_quietly(temporary)
        raise
    finally:
        video.capture.release()
    writer.release()
    os.replace(temporary, video_path)
    categories = [{"id": index, "name": name} for index, name in enumerate(classes) if index > 0]
    write_json_atomic(json_path, {"video": os.path.basename(video.path), "fps": video.fps, "categories": categories,
                                  "frames": records})
    return VideoRun(len(records), sum(len(r["detections"]) for r in records), video_path, json_path)
