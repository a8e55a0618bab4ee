"""The compiled CPU kernels of the fast formulation (:mod:`src.models.layers`), as MindSpore ``ops.Custom``
operators.

conv_kernels.cc computes, on channels-last (NHWC) float32 tensors and each with its gradient, the 3x3
and 5x5 depthwise convolutions, max pooling and BatchNorm (+ ReLU6); dense_conv.cc the dense
convolutions. Each is built once per machine (:func:`src.native.build`); each operator here is one
``"aot"`` Custom op of one of them. The BatchNorm
operators take the layer's own eps and momentum as a last input (:func:`batch_norm_settings`), so a layer
with eps 1e-5 (MobileNetV1, the FPNs) normalises in training exactly as its nn.BatchNorm2d would.
"""
import functools
import glob
import os

import mindspore as ms
import numpy as np
from mindspore import ops

from src import native

# BatchNorm settings of the model zoo's SSD-MobileNetV2, GhostNet and SSD heads (eps 1e-3, momentum 0.97):
# the defaults of the layers that do not set their own.
BN_EPS = 1e-3
BN_MOMENTUM = 0.97

CONV_KERNEL_FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-pthread", "-shared", "-fPIC", "-std=c++14")


def batch_norm_settings(eps=BN_EPS, momentum=BN_MOMENTUM):
    """The BatchNorm operators' last input: float64 [eps, momentum], ``momentum`` as nn.BatchNorm2d takes
    it (the weight of the old moving average). float64 so that the kernel adds exactly ``eps``."""
    return ms.Tensor(np.array([eps, momentum], np.float64))


@functools.lru_cache(maxsize=None)
def kernel_library():
    """Path of the compiled CPU kernels (conv_kernels.cc, built once per machine), or None (with one
    warning) when they cannot be built."""
    return native.build(native.source_path("conv_kernels.cc"), CONV_KERNEL_FLAGS)


def onednn_library():
    """Path of the oneDNN library MindSpore ships (``mindspore/lib/libdnnl.so.*``), or None."""
    found = sorted(glob.glob(os.path.join(os.path.dirname(ms.__file__), "lib", "libdnnl.so.*")))
    return found[-1] if found else None


@functools.lru_cache(maxsize=None)
def dense_conv_library():
    """Path of the compiled dense convolution (dense_conv.cc, built once per machine against MindSpore's
    oneDNN, whose sgemm it calls), or None (with one warning) when it cannot be built."""
    onednn = onednn_library()
    if onednn is None:
        native.LOGGER.warning("MindSpore ships no oneDNN library here: the fast formulation falls back to the "
                              "plain one")
        return None
    flags = CONV_KERNEL_FLAGS + ('-DSSD_DNNL_LIBRARY="%s"' % onednn, "-ldl")
    return native.build(native.source_path("dense_conv.cc"), flags, "the plain formulation")


def fast_kernels_available():
    """True when both compiled libraries of the fast formulation can be built and loaded."""
    return kernel_library() is not None and dense_conv_library() is not None


def _kernel(name, out_shape, out_dtype, bprop=None, library=kernel_library):
    lib = library()
    if lib is None:
        raise RuntimeError("the fast CPU kernels are not available on this machine (no C++ compiler?)")
    return ops.Custom("%s:%s" % (lib, name), out_shape, out_dtype, "aot", bprop=bprop)


def out_side(size, kernel, stride, padding, dilation=1):
    """Output side of a window op: "same" rounds up; an int pads both sides."""
    if padding == "same":
        return (size + stride - 1) // stride
    return (size + 2 * padding - (kernel - 1) * dilation - 1) // stride + 1


def _same(size, stride):
    return -(-size // stride)


def _first(*args):
    return args[0]


def _last(*args):
    return args[-1]


def depthwise_op(stride, kernel=3):
    """``op(x_nhwc, w) -> y_nhwc``: depthwise ``kernel`` x ``kernel`` convolution (3 or 5), "same" padding,
    with its own gradient."""
    def out_shape(x, w):
        return [x[0], _same(x[1], stride), _same(x[2], stride), x[3]]

    prefix = "Dw" if kernel == 3 else "Dw%d" % kernel
    grad_x = _kernel("%sBackwardInput%d" % (prefix, stride), _last, _first)
    grad_w = _kernel("%sBackwardWeight%d" % (prefix, stride), _last, _first)

    def bprop(x, w, out, dout):
        return grad_x(dout, w, x), grad_w(x, dout, w)

    return _kernel("%sForward%d" % (prefix, stride), out_shape, _first, bprop)


def dense_conv_op(kernel, stride, padding, dilation):
    """``op(x_nhwc, w, geometry) -> y_nhwc`` (``geometry``: :func:`dense_conv_geometry`): dense convolution
    with weight [out, in, kernel, kernel], ``padding`` "same" (TensorFlow) or zero rows and columns on each
    side, with its own gradient, which keeps only ``x`` (dense_conv.cc)."""
    def out_shape(x, w, _):
        return [x[0], out_side(x[1], kernel, stride, padding, dilation),
                out_side(x[2], kernel, stride, padding, dilation), w[0]]

    dense = functools.partial(_kernel, library=dense_conv_library)
    grad_x = dense("DenseConvBackwardInput", lambda dy, w, x, _: x, _first)
    grad_w = dense("DenseConvBackwardWeight", lambda x, dy, w, _: w, _first)

    def bprop(x, w, geometry, out, dout):
        return grad_x(dout, w, x, geometry), grad_w(x, dout, w, geometry), ops.zeros_like(geometry)

    forward = dense("DenseConvForward", out_shape, lambda x, *_: x, bprop)
    # PyNative caches an operator's output shape by its name and attributes: the window must be one of them.
    forward.add_prim_attr("window", "k%d_s%d_p%s_d%d" % (kernel, stride, padding, dilation))
    return forward


def max_pool_op(kernel, stride):
    """``op(x_nhwc, geometry) -> y_nhwc`` (``geometry``: :func:`max_pool_geometry`): max pooling over
    ``kernel`` x ``kernel`` windows, TensorFlow "same" padding (padded cells never win), with its own
    gradient, which keeps only ``x`` (conv_kernels.cc)."""
    def out_shape(x, _):
        return [x[0], _same(x[1], stride), _same(x[2], stride), x[3]]

    grad_x = _kernel("MaxPoolBackward", lambda dy, x, _: x, _first)

    def bprop(x, geometry, out, dout):
        return grad_x(dout, x, geometry), ops.zeros_like(geometry)

    forward = _kernel("MaxPoolForward", out_shape, _first, bprop)
    forward.add_prim_attr("window", "k%d_s%d" % (kernel, stride))  # PyNative's shape cache: see dense_conv_op
    return forward


def max_pool_geometry(kernel, stride):
    """The max pooling operator's last input: int64 [kernel, stride]."""
    return ms.Tensor(np.array([kernel, stride], np.int64))


def dense_conv_geometry(kernel, stride, padding, dilation):
    """The dense convolution's last input: int64 [kernel, stride, dilation, pad] (pad -1: "same")."""
    pad = -1 if padding == "same" else int(padding)
    return ms.Tensor(np.array([kernel, stride, dilation, pad], np.int64))


def batch_norm_op(relu6):
    """``op(x_nhwc, gamma, beta, moving_mean, moving_var, settings) -> (y, batch_mean, batch_var,
    new_moving_mean, new_moving_var)``: training BatchNorm (+ ReLU6) with the eps of ``settings``
    (:func:`batch_norm_settings`), and the moving averages updated with its momentum and the unbiased batch
    variance (batch_var is the biased one)."""
    def shapes(x, gamma, *_):
        return x, gamma, gamma, gamma, gamma

    def dtypes(x, *_):
        return (x,) * 5

    grad = _kernel("BnBackward%d" % relu6, lambda dy, x, gamma, *_: (x, gamma, gamma),
                   lambda *types: types[:1] * 3)

    def bprop(x, gamma, beta, moving_mean, moving_var, settings, out, dout):
        dx, dgamma, dbeta = grad(dout[0], x, gamma, beta, out[1], out[2], settings)
        return dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_var), ops.zeros_like(settings)

    return _kernel("BnForward%d" % relu6, shapes, dtypes, bprop)


def batch_norm_apply_op(relu6):
    """``op(x_nhwc, gamma, beta, mean, var, settings) -> y``: BatchNorm with given statistics and the eps of
    ``settings`` (+ ReLU6)."""
    grad = _kernel("BnApplyBackward%d" % relu6, lambda dy, x, gamma, *_: (x, gamma, gamma),
                   lambda *dtypes: dtypes[:1] * 3)

    def bprop(x, gamma, beta, mean, var, settings, out, dout):
        dx, dgamma, dbeta = grad(dout, x, gamma, beta, mean, var, settings)
        return dx, dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var), ops.zeros_like(settings)

    return _kernel("BnApply%d" % relu6, _first, _first, bprop)
