"""From a trained network to detections, one module per stage:

* ``detector``: ``SsdDetector``, the network plus box decoding and sigmoid (the graph eval, hub and
  export run), and building one from a checkpoint;
* ``runtimes``: ``predict(images) -> (boxes, scores)`` functions over MindSpore, a MINDIR file or
  onnxruntime;
* ``postprocess``: score threshold, per-class NMS, boxes to COCO ``[x, y, w, h]`` pixels;
* ``coco_eval`` and ``evaluation``: COCO mAP of any runtime over an evaluation split; ``protocol``: which
  images are scored; ``per_class``, ``error_analysis``, ``eval_plots``, ``analysis``: what explains the
  figure (per-class table, confusion matrix, error breakdown, PR curves); ``voc_metrics``: VOC AP;
* ``images``: detection on image files; ``raw_outputs``: the 310 app's per-image output files;
* ``export``: the detector as MINDIR, AIR or ONNX; ``visualize``: boxes drawn on images.
"""
