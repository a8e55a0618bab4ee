"""Calls the compiled kernels of src/native/conv_kernels.cc directly through ctypes, with the MindSpore
"aot" signature, on numpy buffers fenced by guard words: every input and output sits between two guard
regions, inputs' guards hold NaN (a read past an input shows up as NaN in an output), outputs' guards hold
a sentinel bit pattern (a write past an output changes it), and outputs start as NaN (a kernel that
reads its output before writing it, e.g. accumulating into memory it never zeroed, leaves NaN)."""
import ctypes
import os
import shutil

import numpy as np

GUARD = 4096  # floats on each side of every buffer: more than one row of any tested shape
SENTINEL = np.uint32(0xDEADBEEF)


class Fenced:
    """An array of ``shape`` and ``dtype`` inside a larger buffer with ``GUARD`` elements on each side whose
    bits are ``guard_bits`` (an unsigned integer of the dtype's width)."""

    def __init__(self, shape, fill, guard_bits, dtype=np.float32):
        size = int(np.prod(shape))
        self.raw = np.empty(size + 2 * GUARD, dtype=dtype)
        self.bits = self.raw.view(np.dtype("u%d" % self.raw.itemsize))
        self.guard_bits = self.bits.dtype.type(guard_bits)
        self.bits[:] = self.guard_bits
        self.array = self.raw[GUARD:GUARD + size].reshape(shape)
        self.array[...] = fill

    def guards_intact(self):
        return bool(np.all(self.bits[:GUARD] == self.guard_bits) and np.all(self.bits[-GUARD:] == self.guard_bits))

    def pointer(self):
        return self.array.ctypes.data_as(ctypes.c_void_p)


def load_with_threads(library, folder, threads, warm_up):
    """The library at ``library`` loaded from its own copy in ``folder``, with SSD_KERNEL_THREADS set to
    ``threads`` (None: unset) while ``warm_up(loaded)`` makes a first call, which reads the variable once."""
    copy = os.path.join(str(folder), os.path.basename(library))
    shutil.copy(library, copy)
    saved = os.environ.pop("SSD_KERNEL_THREADS", None)
    if threads is not None:
        os.environ["SSD_KERNEL_THREADS"] = str(threads)
    try:
        loaded = ctypes.CDLL(copy)
        warm_up(loaded)
    finally:
        os.environ.pop("SSD_KERNEL_THREADS", None)
        if saved is not None:
            os.environ["SSD_KERNEL_THREADS"] = saved
    return loaded


def nan_bits(dtype):
    """The guard bit pattern of ``dtype``: NaN for float32 / float64, the largest value for an integer type;
    as an unsigned integer."""
    unsigned = np.dtype("u%d" % np.dtype(dtype).itemsize)
    if np.issubdtype(dtype, np.integer):
        return np.array(np.iinfo(dtype).max, dtype).view(unsigned)[()]
    return np.array(np.nan, dtype).view(unsigned)[()]


def call(lib, name, inputs, out_shapes, declared=None):
    """Run kernel ``name`` on ``inputs`` (float32, or float64 for the BatchNorm settings) with float32 outputs
    of ``out_shapes``; returns the outputs. Raises AssertionError if a guard changed, an input changed or an
    output was left (partly) unwritten. ``declared``: the shapes given to the kernel for the outputs, if not
    those allocated (to test the fence)."""
    ins = [Fenced(a.shape, a, nan_bits(a.dtype), a.dtype) for a in inputs]
    outs = [Fenced(s, np.nan, SENTINEL) for s in out_shapes]
    buffers = ins + outs
    shapes_given = [a.shape for a in inputs] + [tuple(s) for s in (declared or out_shapes)]
    n = len(buffers)
    params = (ctypes.c_void_p * n)(*[b.pointer() for b in buffers])
    ndims = (ctypes.c_int * n)(*[len(s) for s in shapes_given])
    shape_arrays = [(ctypes.c_int64 * max(len(s), 1))(*s) for s in shapes_given]
    shapes = (ctypes.POINTER(ctypes.c_int64) * n)(*[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64))
                                                    for s in shape_arrays])
    dtypes = (ctypes.c_char_p * n)(*[str(b.array.dtype).encode() for b in buffers])
    func = getattr(lib, name)
    func.restype = ctypes.c_int
    status = func(n, params, ndims, shapes, dtypes, None, None)
    assert status == 0, "%s returned %d" % (name, status)
    for i, (fenced, original) in enumerate(zip(ins, inputs)):
        assert fenced.guards_intact(), "%s wrote into the guard of input %d %s" % (name, i, original.shape)
        assert np.array_equal(fenced.array, original), "%s changed input %d %s" % (name, i, original.shape)
    for i, fenced in enumerate(outs):
        assert fenced.guards_intact(), "%s wrote past output %d %s" % (name, i, fenced.array.shape)
        bad = np.isnan(fenced.array)
        assert not bad.any(), "%s left %d of %d values of output %d %s NaN (unwritten, or read past an input)" % (
            name, int(bad.sum()), bad.size, i, fenced.array.shape)
    return [o.array.copy() for o in outs]


# ---- float64 references of the depthwise kernels (NHWC, K x K "same" windows, TensorFlow padding) ----

def same_geometry(height, width, stride, k=3):
    out_h, out_w = -(-height // stride), -(-width // stride)
    top = max((out_h - 1) * stride + k - height, 0) // 2
    left = max((out_w - 1) * stride + k - width, 0) // 2
    return out_h, out_w, top, left


def padded(x, stride, k=3):
    """x [B, H, W, C] zero-padded so that tap (ky, kx) of output (oy, ox) is p[:, oy*s + ky, ox*s + kx]."""
    b, h, w, c = x.shape
    out_h, out_w, top, left = same_geometry(h, w, stride, k)
    p = np.zeros((b, (out_h - 1) * stride + k, (out_w - 1) * stride + k, c), np.float64)
    rows, cols = min(h, p.shape[1] - top), min(w, p.shape[2] - left)
    p[:, top:top + rows, left:left + cols] = x[:, :rows, :cols]
    return p, out_h, out_w, top, left


def taps(p, stride, out_h, out_w, k=3):
    """The k*k [B, Ho, Wo, C] views of a padded input, tap ky*k + kx."""
    return [p[:, ky:ky + stride * (out_h - 1) + 1:stride, kx:kx + stride * (out_w - 1) + 1:stride]
            for ky in range(k) for kx in range(k)]


def kernel_side(w):
    """k of a depthwise weight [C, 1, k, k]."""
    return w.shape[-1]


def depthwise_forward(x, w, stride):
    k = kernel_side(w)
    p, out_h, out_w, _, _ = padded(x, stride, k)
    weights = w.reshape(w.shape[0], k * k).astype(np.float64)
    return sum(v * weights[:, t] for t, v in enumerate(taps(p, stride, out_h, out_w, k)))


def scatter_taps(x_shape, stride, per_tap, k=3):
    """Adjoint of taps(): sum of per_tap(t) [B, Ho, Wo, C] placed at tap t's positions, cropped to x_shape."""
    b, h, w, c = x_shape
    out_h, out_w, top, left = same_geometry(h, w, stride, k)
    p = np.zeros((b, (out_h - 1) * stride + k, (out_w - 1) * stride + k, c), np.float64)
    for t in range(k * k):
        ky, kx = divmod(t, k)
        p[:, ky:ky + stride * (out_h - 1) + 1:stride, kx:kx + stride * (out_w - 1) + 1:stride] += per_tap(t)
    out = np.zeros(x_shape, np.float64)
    rows, cols = min(h, p.shape[1] - top), min(w, p.shape[2] - left)
    out[:, :rows, :cols] = p[:, top:top + rows, left:left + cols]
    return out


def depthwise_backward_input(dy, w, x_shape, stride):
    k = kernel_side(w)
    weights = w.reshape(w.shape[0], k * k).astype(np.float64)
    return scatter_taps(x_shape, stride, lambda t: dy * weights[:, t], k)


def depthwise_backward_weight(x, dy, stride, k=3):
    p, out_h, out_w, _, _ = padded(x, stride, k)
    views = taps(p, stride, out_h, out_w, k)
    return np.stack([(v * dy).sum((0, 1, 2)) for v in views], 1).reshape(x.shape[3], 1, k, k)


# ---- float64 reference of max pooling (k x k windows, stride s, "same" padding: padded cells never win) ---

def max_pool(x, k, stride):
    """(y, dx_of) of NHWC x: the pooled maps and a function from dy to the input gradient, which goes to the
    first largest input of each window (row-major)."""
    b, h, w, c = x.shape
    out_h, out_w, top, left = same_geometry(h, w, stride, k)
    p = np.full((b, (out_h - 1) * stride + k, (out_w - 1) * stride + k, c), -np.inf)
    rows, cols = min(h, p.shape[1] - top), min(w, p.shape[2] - left)
    p[:, top:top + rows, left:left + cols] = x[:, :rows, :cols]
    views = np.stack(taps(p, stride, out_h, out_w, k))  # [k*k, B, Ho, Wo, C]
    winner = views.argmax(0)

    def dx_of(dy):
        return scatter_taps(x.shape, stride, lambda t: np.where(winner == t, dy, 0.0), k)

    return views.max(0), dx_of
