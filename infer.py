"""Detect objects in images or a video: python infer.py --checkpoint_file_path=CKPT --input=IMAGE|FOLDER|VIDEO --output=DIR

Each JPEG, PNG or BMP image (any size; a folder is searched recursively) is resized and normalised as
in evaluation, run through the detector, and written to --output under the same relative name with its
boxes, class names and scores drawn. All detections go to ``DIR/detections.json`` in the COCO layout
(images, categories, annotations with a ``score``; category ids are indices in ``classes``).
Detections scoring above ``--score_threshold`` are kept; ``nms_threshold`` and ``max_boxes`` apply as
in evaluation. An image that cannot be read is named on one line and skipped.

A video (.mp4, .avi, .mov, .mkv, .webm, .m4v) is detected frame by frame and written to --output under
its own name with every frame drawn, at its size and frame rate, in its codec where OpenCV can write it
(:mod:`src.inference.video`); the detections of every frame go to ``DIR/<stem>.detections.json``.

Detection is the Python API's (:class:`src.api.Detector`): the checkpoint's stored model settings are
merged into the configuration, and ``--infer_backend`` picks the runtime as for eval.py
(:func:`src.inference.runtimes.checkpoint_predictor`): ``mindspore``, or ``onnxruntime`` (the checkpoint
is exported to ONNX first). Either gives a ``predict`` function mapping a float32 batch ``[B, 3, H, W]``
(as :func:`src.data.augment.eval_transform` makes it) to numpy ``(boxes [B, N, 4] ymin, xmin, ymax, xmax
in [0, 1], scores [B, N, num_classes])``.
"""
import os
import sys

from src.config import load_config_or_exit
from src.errors import UserError, exit_status

DETECTIONS_FILE = "detections.json"


def make_predictor(cfg):
    """The :class:`src.api.Detector` of the checkpoint to load, its stored model settings merged into ``cfg``,
    on the runtime ``infer_backend`` names. A plain ``predict(batch) -> (boxes, scores)`` may stand in for it
    (the tests' fake model); :func:`make_detector` accepts both."""
    from src.api import Detector
    from src.checkpoint import checkpoint_to_load

    return Detector.from_config(cfg, checkpoint_to_load(cfg))


def make_detector(cfg):
    """The Detector of :func:`make_predictor`; a plain predict function becomes a Detector over ``cfg``."""
    from src.api import Detector

    made = make_predictor(cfg)
    return made if isinstance(made, Detector) else Detector(made, cfg)


def output_folder(cfg):
    """--output, or output_path/infer when it is empty."""
    return cfg.output or os.path.join(cfg.output_path, "infer")


def detections_document(cfg, images, detections):
    """The COCO-layout json of a run: images, categories and the detections as scored annotations."""
    annotations = [dict(d, id=k + 1, area=d["bbox"][2] * d["bbox"][3], iscrowd=0) for k, d in enumerate(detections)]
    categories = [{"id": index, "name": name} for index, name in enumerate(cfg.classes) if index > 0]
    return {"info": {"description": "detections of infer.py", "score_threshold": cfg.score_threshold},
            "images": images, "categories": categories, "annotations": annotations}


def infer(cfg):
    """Detect, draw and write every input image; returns (images written, detections, images skipped)."""
    from tqdm import tqdm

    from src.inference.coco_eval import write_json_atomic
    from src.inference.images import find_images, read_image
    from src.inference.visualize import write_image

    out_dir = output_folder(cfg)
    inputs = find_images(cfg.input, out_dir)
    detector = make_detector(cfg)
    images, detections, skipped = [], [], []
    for path, name in tqdm(inputs, desc="detecting", unit="img", file=sys.stderr,
                           disable=len(inputs) == 1 or not sys.stderr.isatty()):
        image = read_image(path)
        if image is None:
            tqdm.write("skipped %s: not a readable image" % path, file=sys.stderr)
            skipped.append(path)
            continue
        result = detector(image)
        if not write_image(os.path.join(out_dir, name), result.draw(image)):
            raise UserError("cannot write %s" % os.path.join(out_dir, name))
        images.append({"id": len(images) + 1, "file_name": name, "height": image.shape[0], "width": image.shape[1]})
        detections += result.to_coco(len(images))
    if not images:
        raise UserError("none of the %d images could be read" % len(inputs))
    write_json_atomic(os.path.join(out_dir, DETECTIONS_FILE), detections_document(detector.cfg, images, detections))
    return images, detections, skipped


def infer_video(cfg):
    """Detect, draw and write every frame of the --input video; returns the :class:`VideoRun`."""
    from src.inference.video import detect_video, open_video, output_paths

    out_dir = output_folder(cfg)
    output_paths(cfg.input, out_dir)
    video = open_video(cfg.input)
    detector = make_detector(cfg)
    return detect_video(detector, video, out_dir, detector.cfg.classes, sys.stderr.isatty())


def plural(count, noun):
    """``1 frame``, ``2 frames``."""
    return "%d %s%s" % (count, noun, "" if count == 1 else "s")


def report_video(cfg):
    """Detect in every frame of the --input video, then print one summary line."""
    run = infer_video(cfg)
    print("%s, %s with score > %g: drawn video in %s, all detections in %s"
          % (plural(run.frames, "frame"), plural(run.detections, "detection"), cfg.score_threshold,
             run.video_path, run.json_path))


def report_images(cfg):
    """Detect in every input image, then print one summary line."""
    images, detections, skipped = infer(cfg)
    out_dir = output_folder(cfg)
    print("%s, %s with score > %g: drawn images in %s, all detections in %s%s"
          % (plural(len(images), "image"), plural(len(detections), "detection"), cfg.score_threshold, out_dir,
             os.path.join(out_dir, DETECTIONS_FILE),
             "; %s skipped" % plural(len(skipped), "unreadable image") if skipped else ""))


def infer_and_report(cfg):
    """Detect in the --input video, or in every input image, then print one summary line."""
    from src.inference.video import is_video

    (report_video if is_video(cfg.input) else report_images)(cfg)


def main(argv=None):
    """Command line: detect and report; a user error is one line and status 1."""
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    return exit_status(infer_and_report, cfg)


if __name__ == "__main__":
    sys.exit(main())
