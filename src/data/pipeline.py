"""MindRecord -> decoded, augmented, anchor-encoded batches (mindspore.dataset).

Training rows become ``(image [3,H,W] float32, box [N,4] float32, label [N] int32, num_match int32)``
with N the number of default boxes; evaluation rows become ``(img_id, image, image_shape [h, w])``.
Augmentation randomness is seeded from ``cfg.seed``, the epoch and the image id, and the shuffle
order from ``cfg.seed`` and the epoch, so a run is reproducible whatever the order in which worker
threads pick up rows, and a run resumed at epoch k sees exactly the data an uninterrupted run would.
"""
import os

import cv2
import numpy as np

from src.anchors import default_boxes_yxhw, default_boxes_yxyx
from src.box_coder import SsdTargetEncoder
from src.data.augment import eval_transform, resize_only_transform, train_transform

TRAIN_COLUMNS = ["image", "box", "label", "num_match"]
EVAL_COLUMNS = ["img_id", "image", "image_shape"]


def decode_image(data):
    """Encoded bytes -> HWC uint8 BGR; grayscale and RGBA come out as 3 channels."""
    image = cv2.imdecode(np.frombuffer(data.tobytes() if hasattr(data, "tobytes") else data, np.uint8),
                         cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("an image in the MindRecord cannot be decoded; rebuild it with --only_create_dataset=True")
    return image


def split_annotation(annotation):
    """[K, 5] float32 rows (ymin, xmin, ymax, xmax, label) -> boxes [K, 4], labels [K] int32."""
    rows = np.asarray(annotation, dtype=np.float32)
    # MindRecord gives an image without boxes back as a 0-d array, not an empty [0, 5] one.
    rows = rows.reshape(-1, 5) if rows.ndim else np.zeros((0, 5), np.float32)
    return np.ascontiguousarray(rows[:, :4]), rows[:, 4].astype(np.int32)


class TrainSample:
    """Decode, augment (src/data/augment.py) and encode one training row to anchor targets."""

    def __init__(self, cfg, epoch, seen=None):
        self.epoch = int(epoch)
        self.seen = seen
        self.encoder = SsdTargetEncoder(default_boxes_yxhw(cfg), default_boxes_yxyx(cfg),
                                        cfg.match_threshold, cfg.prior_scaling)
        self.img_shape = tuple(cfg.img_shape)
        self.use_expand = bool(cfg.use_expand)
        self.max_expand_ratio = float(cfg.max_expand_ratio)
        self.augment = bool(cfg.augment)
        self.overhead = bool(cfg.get("overhead", False))
        self.seed = int(cfg.seed)

    def transform(self, image, boxes, labels, rng):
        if not self.augment:
            return resize_only_transform(image, boxes, labels, self.img_shape)
        return train_transform(image, boxes, labels, rng, self.img_shape, self.use_expand, self.max_expand_ratio,
                               self.overhead)

    def __call__(self, img_id, image, annotation):
        boxes, labels = split_annotation(annotation)
        image_id = int(np.asarray(img_id).reshape(-1)[0])
        if self.seen is not None:
            self.seen.append(image_id)
        rng = np.random.default_rng([self.seed, self.epoch, image_id])
        chw, boxes, labels = self.transform(decode_image(image), boxes, labels, rng)
        loc, target, num_match = self.encoder(boxes, labels)
        return chw, loc, target, np.array(num_match, dtype=np.int32)


class EvalSample:
    """Decode and resize one evaluation row, keeping its image id and original size."""

    def __init__(self, cfg):
        self.img_shape = tuple(cfg.img_shape)

    def __call__(self, img_id, image):
        decoded = decode_image(image)
        shape = np.array(decoded.shape[:2], dtype=np.int32)
        return np.asarray(img_id, dtype=np.int64).reshape(-1)[:1].reshape(()), \
            eval_transform(decoded, self.img_shape), shape


def create_ssd_dataset(cfg, files, is_training, batch_size, rank=0, group_size=1, epoch=0, num_workers=None,
                       seen=None):
    """A batched mindspore.dataset over MindRecord ``files``, sharded by ``rank`` of ``group_size``.

    Training datasets are made for one ``epoch`` at a time (its shuffle and augmentation depend on it).
    ``seen``, a list, receives the img_id of every training row as it is read (evidence of the sharding).
    """
    import mindspore.dataset as ds

    ds.config.set_seed(int(cfg.seed) * 1000 + int(epoch))
    workers = max(1, min(int(num_workers or cfg.num_parallel_workers), os.cpu_count() or 1))
    dataset = ds.MindDataset(files, columns_list=["img_id", "image", "annotation"],
                             num_shards=group_size if group_size > 1 else None,
                             shard_id=rank if group_size > 1 else None, shuffle=is_training)
    if is_training:
        dataset = dataset.map(operations=TrainSample(cfg, epoch, seen), input_columns=["img_id", "image", "annotation"],
                              output_columns=TRAIN_COLUMNS, num_parallel_workers=workers,
                              python_multiprocessing=False)
        dataset = dataset.project(TRAIN_COLUMNS)
        return dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(operations=EvalSample(cfg), input_columns=["img_id", "image"],
                          output_columns=EVAL_COLUMNS, num_parallel_workers=workers,
                          python_multiprocessing=False)
    dataset = dataset.project(EVAL_COLUMNS)
    return dataset.batch(batch_size, drop_remainder=False)
