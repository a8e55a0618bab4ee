"""FLOPs of a network, counted from the convolutions and dense layers it runs, and the machine's
measured fp32 peak (a large matrix multiply), so achieved GFLOP/s can be stated against it."""
import time

import numpy as np


def conv_flops(network, image_shape):
    """Multiply-adds x 2 of every 4-D-weight layer (convolutions) for one forward pass of one image.

    Output sizes come from forward hooks in PYNATIVE mode, so any formulation of a layer counts the
    same: what is counted is the model's arithmetic, not what a kernel happens to do. A layer run more
    than once (the FPN models' weight-shared heads) counts every run.
    """
    import mindspore as ms

    shapes, handles = {}, []
    for name, cell in network.cells_and_names():
        weight = getattr(cell, "weight", None)
        if weight is not None and len(weight.shape) == 4:
            handles.append(cell.register_forward_hook(_recorder(shapes, name, tuple(weight.shape))))
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        network(ms.Tensor(np.zeros((1,) + tuple(image_shape), np.float32)))
    finally:
        ms.set_context(mode=mode)
        for handle in handles:
            handle.remove()
    return float(sum(shapes.values()))


def _recorder(shapes, name, weight_shape):
    def hook(cell, inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        per_output = weight_shape[1] * weight_shape[2] * weight_shape[3]
        shapes[name] = shapes.get(name, 0.0) + 2.0 * float(np.prod(out.shape)) * per_output
    return hook


def measured_peak_gflops(size=4096, repeats=5):
    """fp32 GFLOP/s of a size x size matrix multiply on all cores: the better of numpy's BLAS and
    MindSpore's MatMul (median of ``repeats`` each)."""
    import mindspore as ms
    from mindspore import ops

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    ta, tb, matmul = ms.Tensor(a), ms.Tensor(b), ops.MatMul()
    best = 0.0
    for run in (lambda: a @ b, lambda: matmul(ta, tb).asnumpy()):
        run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        best = max(best, 2.0 * size ** 3 / float(np.median(times)) / 1e9)
    return best
