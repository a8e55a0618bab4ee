"""The benchmark's sections: one function per group of figures, each returning
``{name: {"value": number, "noise": spread/median, ...}}``."""
import os
import time

import numpy as np

from benchmarks.encode import run as encode_run
from benchmarks.flops import conv_flops
from benchmarks.timing import measure


def figure(value, noise=0.0, unit=""):
    """One figure; ``value`` None means not measurable here (e.g. no C++ compiler)."""
    return {"value": None if value is None else float(value), "noise": float(noise), "unit": unit}


def fake_batch(cfg, batch):
    """Random images with real anchor targets for a few random boxes per image."""
    from src.anchors import default_boxes_yxhw, default_boxes_yxyx
    from src.box_coder import SsdTargetEncoder
    rng = np.random.default_rng(0)
    encoder = SsdTargetEncoder(default_boxes_yxhw(cfg), default_boxes_yxyx(cfg), cfg.match_threshold,
                               cfg.prior_scaling)
    images = rng.standard_normal((batch, 3) + tuple(cfg.img_shape)).astype(np.float32)
    targets = []
    for _ in range(batch):
        corner = rng.uniform(0, 0.6, (4, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(0.1, 0.4, (4, 2))], 1).astype(np.float32)
        targets.append(encoder(boxes, rng.integers(1, cfg.num_classes, 4)))
    loc, label, num = (np.stack(t) for t in zip(*targets))
    return images, loc, label, num.astype(np.int32)


def train_figures(cfg, batch, repeats):
    import mindspore as ms

    from src.models import build_ssd
    from src.training.loss import SsdWithLoss
    from src.training.train_step import TrainStep, make_optimizer, make_scaler

    network = build_ssd(cfg)
    net_with_loss = SsdWithLoss(network, cfg.num_classes, cfg.gamma, cfg.alpha)
    optimizer = make_optimizer(net_with_loss, np.full(1000, 0.01, np.float32), cfg.momentum, cfg.weight_decay)
    scaler, dynamic = make_scaler(cfg.device_target, cfg.loss_scale, cfg.get("use_float16", False))
    step = TrainStep(net_with_loss, optimizer, scaler, dynamic)
    network.set_train(True)
    inputs = [ms.Tensor(x) for x in fake_batch(cfg, batch)]
    timing = measure(lambda: step(*inputs)[0].asnumpy(), repeats=repeats, warmup=2)
    flops = conv_flops(network, (3,) + tuple(cfg.img_shape))
    seconds = timing["median"]
    return {"images_per_s": figure(batch / seconds, timing["noise"], "img/s"),
            "step_s": figure(seconds, timing["noise"], "s"),
            "gflops": figure(3 * flops * batch / seconds / 1e9, timing["noise"], "GFLOP/s"),
            "forward_gflop_per_image": figure(flops / 1e9, 0.0, "GFLOP")}, network


def inference_figures(cfg, network, repeats, batches=(1, 8)):
    import mindspore as ms

    from src.inference.detector import SsdDetector
    from src.inference.postprocess import detect

    detector = SsdDetector(network, cfg)
    out = {}
    for batch in batches:
        shape = (batch, 3) + tuple(cfg.img_shape)
        image = ms.Tensor(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
        alone = measure(lambda: detector(image)[1].asnumpy(), repeats=repeats, warmup=2)

        def end_to_end():
            boxes, scores = detector(image)
            boxes, scores = boxes.asnumpy(), scores.asnumpy()
            for i in range(batch):
                detect(boxes[i], scores[i], cfg.min_score, cfg.nms_threshold, cfg.max_boxes)
        full = measure(end_to_end, repeats=repeats, warmup=1)
        out["network_b%d_images_per_s" % batch] = figure(batch / alone["median"], alone["noise"], "img/s")
        out["end_to_end_b%d_images_per_s" % batch] = figure(batch / full["median"], full["noise"], "img/s")
    return out


def deploy_figures(cfg, repeats):
    """Milliseconds per image at batch 1 of the exported detector (plain formulation, untrained weights)
    run by MindSpore from the MINDIR (``nn.GraphCell``) and by onnxruntime from the ONNX file (CPU),
    and the seconds each export takes (one run, compilation included)."""
    import tempfile

    import mindspore as ms

    from src.inference.detector import SsdDetector
    from src.inference.export import export_detector, exportable_config
    from src.inference.runtimes import OnnxDetector, load_mindir
    from src.models import build_ssd

    network = build_ssd(exportable_config(cfg))
    network.set_train(False)
    detector = SsdDetector(network, cfg)
    image = np.random.default_rng(2).standard_normal((1, 3) + tuple(cfg.img_shape)).astype(np.float32)
    out, paths = {}, {}
    with tempfile.TemporaryDirectory(prefix="ssd_deploy_") as tmp:
        for file_format in ("MINDIR", "ONNX"):
            start = time.perf_counter()
            paths[file_format] = export_detector(detector, cfg, os.path.join(tmp, "ssd"), file_format)
            out["export_%s_s" % file_format.lower()] = figure(time.perf_counter() - start, 0.0, "s")
        graph, tensor = load_mindir(paths["MINDIR"]), ms.Tensor(image)
        mindspore_run = measure(lambda: [t.asnumpy() for t in graph(tensor)], repeats=repeats, warmup=2)
        session = OnnxDetector(paths["ONNX"])
        onnx_run = measure(lambda: session(image), repeats=max(repeats, 3), warmup=2)
    out["mindspore_mindir_b1_ms"] = figure(1000 * mindspore_run["median"], mindspore_run["noise"], "ms")
    out["onnxruntime_b1_ms"] = figure(1000 * onnx_run["median"], onnx_run["noise"], "ms")
    out["onnxruntime_speedup"] = figure(mindspore_run["median"] / onnx_run["median"], 0.0, "x")
    return out


def model_figures(cfg, batch, mode, repeats, infer_batches=(1, 8), train=True):
    """Training (unless ``train`` is False) and inference figures of one model."""
    from src.device import set_mode
    from src.models import build_ssd
    set_mode(mode)
    result = {"input": "%dx%d" % tuple(cfg.img_shape), "batch": batch, "mode": mode}
    if train:
        result["train"], network = train_figures(cfg, batch, repeats)
        result["peak_rss_after_train_gib"] = figure(peak_rss_gib(), 0.0, "GiB")
    else:
        network = build_ssd(cfg)
    result["inference"] = inference_figures(cfg, network, repeats, infer_batches)
    return result


def peak_rss_gib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def data_figures(cfg, tmp, repeats, smoke=False):
    """Pipeline images/s on a generated shapes set, anchor encoding, post-processing, COCO evaluation."""
    from benchmarks.postprocess import benchmark_postprocess
    from src.data.convert import ensure_mindrecord
    from src.data.pipeline import create_ssd_dataset
    from src.data.shapes import generate_shapes

    count = 16 if smoke else 64
    generate_shapes(os.path.join(tmp, "shapes"), num_train=count, num_val=count // 4, seed=0)
    local = cfg.replace(coco_root=os.path.join(tmp, "shapes"), mindrecord_dir=os.path.join(tmp, "mr"))
    files = ensure_mindrecord(local, True)["files"]

    def one_epoch():
        for _ in create_ssd_dataset(local, files, True, 8).create_tuple_iterator(num_epochs=1, output_numpy=True):
            pass
    pipeline = measure(one_epoch, repeats=repeats, warmup=1)
    encode = encode_run(cfg, repeats=max(3, repeats), number=20 if smoke else 200)
    post = [benchmark_postprocess(repeats=5 if smoke else 50) for _ in range(max(1, repeats))]
    return {"pipeline_images_per_s": figure(count / pipeline["median"], pipeline["noise"], "img/s"),
            **encode_figures(encode),
            "postprocess_ms_per_image": figure(np.median(post), (max(post) - min(post)) / np.median(post), "ms"),
            "coco_eval_s": coco_eval_figure(local, tmp, repeats)}


def encode_figures(encode):
    """Matching + encoding per image for each anchor count measured: the compiled path the pipeline runs
    (None without a C++ compiler), numpy, and a per-box loop."""
    out = {}
    for key, row in encode.items():
        anchors = key.split()[0]
        compiled = row.get("compiled_us")
        out["encode_%s_anchors_us" % anchors] = figure(compiled, row.get("compiled_noise", 0.0), "us")
        out["encode_%s_numpy_us" % anchors] = figure(row["vectorised_us"], row["vectorised_noise"], "us")
        out["encode_%s_per_box_loop_us" % anchors] = figure(row["per_box_loop_us"], row["per_box_loop_noise"], "us")
    return out


def coco_eval_figure(cfg, tmp, repeats):
    """Seconds pycocotools takes for the evaluation split, with slightly shifted ground truth as detections."""
    import json

    from src.data.convert import ensure_mindrecord
    from src.inference.coco_eval import evaluate_detections

    gt_json = ensure_mindrecord(cfg, False)["gt_json"]
    with open(gt_json) as stream:
        gt = json.load(stream)
    rng = np.random.default_rng(0)
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.random()),
                   "bbox": [v + float(rng.normal()) for v in a["bbox"]]} for a in gt["annotations"]]
    timing = measure(lambda: evaluate_detections(gt_json, detections, os.path.join(tmp, "eval")), repeats, warmup=0)
    return figure(timing["median"], timing["noise"], "s")
