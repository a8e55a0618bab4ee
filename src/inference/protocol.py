"""Which images an evaluation scores: ``protocol: standard`` (the COCO protocol) or ``model_zoo``.

* ``standard``: every image of the ground truth. An image without annotations still counts (its
  detections are false positives) and an image with crowd regions too (pycocotools ignores detections
  matched to crowd regions). Up to ``max_boxes`` detections per image (the COCO challenge's limit is 100
  per image; pycocotools itself applies ``maxDets`` per image and category).
* ``model_zoo``: as the MindSpore model zoo's SSD evaluation counts: images holding any crowd annotation
  and images with no annotation of the model's classes are left out (the model zoo's dataset never
  yields them), and post-processing keeps up to ``max_boxes`` per class rather than per image
  (:func:`src.inference.postprocess.detect` with ``per_class=True``). Its figure is not comparable with
  published COCO results; it is there to compare with the model zoo's README tables.
"""
PROTOCOLS = ("standard", "model_zoo")


def model_zoo_image_ids(gt: dict, category_ids) -> list:
    """Ids of the images of ``gt`` with no crowd annotation and at least one annotation of
    ``category_ids``, in the ground truth's order."""
    wanted = set(category_ids)
    crowd, annotated = set(), set()
    for annotation in gt.get("annotations", []):
        if annotation.get("iscrowd", 0):
            crowd.add(annotation["image_id"])
        elif annotation["category_id"] in wanted:
            annotated.add(annotation["image_id"])
    return [image["id"] for image in gt.get("images", []) if image["id"] in annotated - crowd]


def images_to_score(protocol: str, gt: dict, category_ids, image_ids=None):
    """The image ids an evaluation scores under ``protocol``, within ``image_ids`` when given (None: every
    image of the ground truth, for ``standard``)."""
    if protocol not in PROTOCOLS:
        raise ValueError("protocol must be one of %s, got %r" % (", ".join(PROTOCOLS), protocol))
    if protocol == "standard":
        return image_ids
    kept = model_zoo_image_ids(gt, category_ids)
    if image_ids is not None:
        given = set(image_ids)
        kept = [image_id for image_id in kept if image_id in given]
    return kept
