"""Detection on image files (infer.py, tools/infer_mindir.py): find the images, read them as the
evaluation pipeline decodes them, run a ``predict`` function on one and return COCO-style detections
in the image's own pixels."""
import os

import cv2
import numpy as np

from src.data.augment import eval_transform
from src.errors import UserError
from src.inference.postprocess import detect, to_coco_detections

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def find_images(input_path: str, output_dir: str) -> list:
    """``[(path, relative name)]``: the file itself, or every image under a folder (sorted, recursive,
    leaving out ``output_dir`` so that earlier results are not detected again)."""
    if os.path.isfile(input_path):
        if os.path.abspath(os.path.join(output_dir, os.path.basename(input_path))) == os.path.abspath(input_path):
            raise UserError("--output must not be the folder of the input image (it would be replaced)")
        return [(input_path, os.path.basename(input_path))]
    if not input_path or not os.path.isdir(input_path):
        raise UserError("input not found: '%s' (set --input to an image or a folder of images)" % input_path)
    if os.path.abspath(output_dir) == os.path.abspath(input_path):
        raise UserError("--output must not be the input folder (the drawn images would replace the originals)")
    skip = os.path.abspath(output_dir)
    found = []
    for folder, subfolders, files in os.walk(input_path):
        subfolders[:] = sorted(d for d in subfolders if os.path.abspath(os.path.join(folder, d)) != skip)
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(folder, name)
                found.append((path, os.path.relpath(path, input_path)))
    if not found:
        raise UserError("no %s images in %s" % ("/".join(e[1:].upper() for e in IMAGE_EXTENSIONS), input_path))
    return found


def list_folder_images(img_path: str) -> list:
    """Sorted image files (JPEG, PNG, BMP) directly inside ``img_path``, as the C++ app lists them."""
    if not img_path or not os.path.isdir(img_path):
        raise UserError("image folder not found: '%s' (set --img_path to the folder of images to run on)" % img_path)
    names = sorted(n for n in os.listdir(img_path) if n.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(img_path, n)))
    if not names:
        raise UserError("no JPEG, PNG or BMP images in %s" % img_path)
    return [os.path.join(img_path, n) for n in names]


def read_image(path: str):
    """HWC uint8 BGR as the evaluation pipeline decodes it (grayscale, RGBA and 16-bit images
    converted), or None when the file cannot be read or decoded."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except (OSError, cv2.error):
        return None


def detect_image(predict, image, cfg, image_id: int) -> list:
    """COCO detection dicts of one BGR image at ``score_threshold``, boxes in its own pixels, category id
    = label index."""
    boxes, scores = predict(eval_transform(image, cfg.img_shape)[None])
    kept, kept_scores, labels = detect(boxes[0], scores[0], cfg.score_threshold, cfg.nms_threshold, cfg.max_boxes)
    labels_to_ids = {label: label for label in range(1, len(cfg.classes))}
    return to_coco_detections(image_id, kept, kept_scores, labels, image.shape[0], image.shape[1], labels_to_ids)
