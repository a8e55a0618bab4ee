"""Drawing detections and ground truth on images with OpenCV, for infer.py and eval.py --visualize.

Images are HWC uint8 BGR, as cv2 decodes them. Boxes come as COCO dicts ``{"bbox": [x, y, w, h],
"category_id", "score"}`` in original image pixels, exactly as :func:`src.inference.postprocess.to_coco_detections`
writes them and as a ground-truth json holds them, so no other box conversion is needed here.
"""
import colorsys
import json
import os
from collections import defaultdict

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
GOLDEN = 0.618033988749895
TITLE_COLOR = (40, 40, 40)
GAP = 6
JPEG_QUALITY = 90


def class_color(label):
    """The BGR colour of a label (index in ``classes``): golden-ratio hue steps, so consecutive labels are
    far apart, and alternate labels darker, so that two labels of close hue still differ."""
    hue = (int(label) * GOLDEN) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95 if int(label) % 2 else 0.7)
    return int(blue * 255), int(green * 255), int(red * 255)


def scale_for(image):
    """Line thickness and font scale that stay readable from 100 px to 4000 px images."""
    side = min(image.shape[:2])
    return max(1, int(round(side / 320))), max(0.35, min(side / 900.0, 2.0))


def text_color(background):
    """Black or white, whichever reads better on ``background`` (BGR)."""
    blue, green, red = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else (255, 255, 255)


def draw_caption(image, text, left, top, color, font_scale):
    """Text on a filled box of ``color``, above (left, top) or just inside when there is no room."""
    thickness = max(1, int(round(font_scale * 1.5)))
    (width, height), base = cv2.getTextSize(text, FONT, font_scale, thickness)
    left = int(min(max(left, 0), max(image.shape[1] - width - 2, 0)))
    top = int(top - height - base - 2 if top - height - base - 2 >= 0 else min(top, image.shape[0] - height - base))
    cv2.rectangle(image, (left, top), (left + width + 2, top + height + base + 2), color, cv2.FILLED)
    cv2.putText(image, text, (left + 1, top + height + 1), FONT, font_scale, text_color(color), thickness, cv2.LINE_AA)


def caption_of(box, names):
    """``kite 0.87`` for a detection, ``kite`` for a ground-truth box, ``(crowd)`` added for crowd regions."""
    name = names.get(box["category_id"], str(box["category_id"]))
    if "score" in box:
        return "%s %.2f" % (name, box["score"])
    return name + (" (crowd)" if box.get("iscrowd") else "")


def draw_boxes(image, boxes, names, colors=None):
    """A copy of ``image`` with each COCO box drawn with its caption; the highest scores end on top.

    ``names`` maps category ids to class names, ``colors`` to BGR colours (default: ``class_color`` of
    the category id, right when ids are label indices). Returns (drawn image, number of boxes drawn).
    """
    out = np.ascontiguousarray(image.copy())
    thickness, font_scale = scale_for(out)
    for box in sorted(boxes, key=lambda b: b.get("score", 1.0)):
        x, y, w, h = (float(v) for v in box["bbox"])
        color = (colors or {}).get(box["category_id"]) or class_color(box["category_id"])
        top_left = (int(round(x)), int(round(y)))
        bottom_right = (int(round(x + w)) - 1, int(round(y + h)) - 1)
        cv2.rectangle(out, top_left, bottom_right, color, 1 if box.get("iscrowd") else thickness)
        draw_caption(out, caption_of(box, names), top_left[0], top_left[1], color, font_scale)
    return out, len(boxes)


def with_title(image, title):
    """``image`` under a white bar holding ``title``."""
    _, font_scale = scale_for(image)
    font_scale = max(font_scale, 0.45)
    (_, height), base = cv2.getTextSize(title, FONT, font_scale, 1)
    bar = np.full((height + base + 10, image.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (5, height + 5), FONT, font_scale, TITLE_COLOR, 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def side_by_side(left, right):
    """Two images next to each other on a white background, a small gap between them."""
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + GAP + right.shape[1], 3), 255, np.uint8)
    canvas[:left.shape[0], :left.shape[1]] = left
    canvas[:right.shape[0], left.shape[1] + GAP:] = right
    return canvas


def write_image(path, image):
    """Write an image (JPEG at quality 90, other formats by extension); False when OpenCV cannot."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.lower().endswith((".jpg", ".jpeg")) else []
    ok, data = cv2.imencode(os.path.splitext(path)[1] or ".png", image, params)
    if not ok:
        return False
    with open(path, "wb") as stream:
        stream.write(data.tobytes())
    return True


def comparison(image, truth, predictions, names, score_threshold, colors=None):
    """Ground truth (left) and predictions scoring above ``score_threshold`` (right) of one image, titled."""
    shown = [p for p in predictions if p["score"] > score_threshold]
    left, count_truth = draw_boxes(image, truth, names, colors)
    right, count_shown = draw_boxes(image, shown, names, colors)
    return side_by_side(with_title(left, "ground truth: %d" % count_truth),
                        with_title(right, "predictions, score > %.2f: %d" % (score_threshold, count_shown)))


def group_by_image(records):
    """COCO dicts grouped by their ``image_id``."""
    grouped = defaultdict(list)
    for record in records:
        grouped[int(record["image_id"])].append(record)
    return grouped


def save_eval_visualizations(files, gt_json, predictions_json, count, out_dir, score_threshold, classes):
    """Draw the first ``count`` images of an evaluation MindRecord: ground truth left, predictions right.

    Images come from the MindRecord ``files`` (in evaluation order), ground truth and category names
    from ``gt_json``, detections from ``predictions_json`` (what eval.py wrote); each class keeps the
    colour of its index in ``classes``, as in infer.py. Each goes to ``out_dir/<img_id>_<name>.jpg``;
    returns the paths written.
    """
    import mindspore.dataset as ds

    with open(gt_json, encoding="utf-8") as stream:
        gt = json.load(stream)
    with open(predictions_json, encoding="utf-8") as stream:
        predictions = group_by_image(json.load(stream))
    truth = group_by_image(gt.get("annotations", []))
    names = {int(c["id"]): str(c["name"]) for c in gt.get("categories", [])}
    colors = {cid: class_color(classes.index(name)) for cid, name in names.items() if name in classes}
    file_names = {int(i["id"]): str(i.get("file_name", "")) for i in gt.get("images", [])}
    dataset = ds.MindDataset(files, columns_list=["img_id", "image"], shuffle=False).take(int(count))
    written = []
    for row in dataset.create_dict_iterator(output_numpy=True, num_epochs=1):
        img_id = int(np.asarray(row["img_id"]).reshape(-1)[0])
        image = cv2.imdecode(np.frombuffer(row["image"].tobytes(), np.uint8), cv2.IMREAD_COLOR)
        stem = os.path.splitext(os.path.basename(file_names.get(img_id, "")))[0]
        path = os.path.join(out_dir, "%d_%s.jpg" % (img_id, stem) if stem else "%d.jpg" % img_id)
        drawn = comparison(image, truth.get(img_id, []), predictions.get(img_id, []), names, score_threshold,
                           colors)
        if write_image(path, drawn):
            written.append(path)
    return written
