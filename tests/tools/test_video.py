"""infer.py on a video (src/inference/video.py): the drawn video keeps the input's frame count, size, frame rate
and codec, the json holds every frame's detections, and a bad video is one line.

The clip is written by the test itself (six 96x128 MJPG frames in an .avi, which every FFmpeg build of
OpenCV writes); the detector is the untrained three-class checkpoint of tests/test_api.py.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.helpers import ROOT
from tests.test_api import CLASSES, save_untrained_checkpoint

FPS = 10.0
HEIGHT, WIDTH = 96, 128


def write_clip(path, count=6, codec="MJPG"):
    """A clip of ``count`` frames: a white square moving over a random background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    background = np.random.default_rng(4).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for index in range(count):
        frame = background.copy()
        frame[20:60, 10 + 10 * index:50 + 10 * index] = 255
        writer.write(frame)
    writer.release()
    return str(path)


def video_facts(path):
    """(frame count, (height, width), fps, FOURCC) of a video, counting the frames by reading them."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    fps, code = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FOURCC))
    shapes = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        shapes.append(frame.shape[:2])
    capture.release()
    return len(shapes), set(shapes), fps, "".join(chr((code >> (8 * k)) & 0xFF) for k in range(4))


def first_frame(path):
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def stderr_lines(text):
    return [line for line in text.splitlines() if line.strip() and "WARNING" not in line]


def test_drawn_video_and_json_of_every_frame(tmp_path):
    from src.api import Detector

    checkpoint = save_untrained_checkpoint(tmp_path / "untrained.ckpt")
    clip = write_clip(tmp_path / "clip.avi")
    out = tmp_path / "drawn"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "infer.py"), "--input=%s" % clip, "--output=%s" % out,
                           "--checkpoint_file_path=%s" % checkpoint, "--score_threshold=0.0", "--max_boxes=5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert stderr_lines(done.stderr) == []
    assert ("6 frames, 30 detections with score > 0: drawn video in %s, all detections in %s"
            % (out / "clip.avi", out / "clip.detections.json")) in done.stdout
    assert sorted(os.listdir(str(out))) == ["clip.avi", "clip.detections.json"]
    assert video_facts(out / "clip.avi") == (6, {(HEIGHT, WIDTH)}, FPS, "MJPG")
    with open(str(out / "clip.detections.json")) as stream:
        doc = json.load(stream)
    assert (doc["video"], doc["fps"]) == ("clip.avi", FPS) and [c["name"] for c in doc["categories"]] == CLASSES[1:]
    assert [(f["frame"], f["time_s"], len(f["detections"])) for f in doc["frames"]] == [
        (k, pytest.approx(k / FPS), 5) for k in range(6)]
    expected = Detector.from_checkpoint(checkpoint, score_threshold=0.0, max_boxes=5)(first_frame(clip))
    got = doc["frames"][0]["detections"]
    assert [(d["image_id"], d["category_id"]) for d in got] == [(0, label) for label in expected.labels]
    assert np.allclose([d["score"] for d in got], expected.scores, rtol=0, atol=1e-6)
    assert np.allclose([d["bbox"] for d in got], [d["bbox"] for d in expected.to_coco(0)], rtol=0, atol=1e-3)


def test_unreadable_or_empty_video_is_one_line(tmp_path, capfd):
    import infer

    (tmp_path / "text.mp4").write_text("not a video")
    write_clip(tmp_path / "empty.avi", count=0)
    cases = [("text.mp4", "text.mp4: not a video OpenCV can read"),
             ("empty.avi", "empty.avi: the video has no frames that can be read")]
    for name, message in cases:
        status = infer.main(["--input=%s" % (tmp_path / name), "--output=%s" % (tmp_path / "out")])
        err = stderr_lines(capfd.readouterr().err)
        assert status == 1 and len(err) == 1 and err[0] == "error: %s" % (tmp_path / message), err
    assert not (tmp_path / "out").exists()


def test_a_codec_opencv_cannot_write_falls_back_in_one_line(tmp_path, capfd):
    from src.inference.video import Video, video_writer

    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    video = Video("phone.mp4", None, FPS, "ZZZZ", 1, frame)        # a FOURCC no encoder has
    writer = video_writer(video, str(tmp_path / "phone.partial.mp4"), (WIDTH, HEIGHT))
    writer.write(frame)
    writer.release()
    err = stderr_lines(capfd.readouterr().err)
    assert err == ["phone.mp4: this OpenCV cannot write its codec ZZZZ; writing mp4v instead"]
    assert video_facts(tmp_path / "phone.partial.mp4")[:3] == (1, {(HEIGHT, WIDTH)}, FPS)
