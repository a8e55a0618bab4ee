"""The compiled CPU kernels of the fast formulation (:mod:`src.models.layers`), as MindSpore ``ops.Custom``
operators.

conv_kernels.cc computes, on channels-last (NHWC) float32 tensors and each with its gradient, the 3x3
depthwise convolution, the dense 3x3 im2col and BatchNorm (+ ReLU6). It is built once per machine
(:func:`src.native.build`); each operator here is one ``"aot"`` Custom op of that library. The BatchNorm
operators take the layer's own eps and momentum as a last input (:func:`batch_norm_settings`), so a layer
with eps 1e-5 (MobileNetV1, the FPNs) normalises in training exactly as its nn.BatchNorm2d would.
"""
import functools

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


def _kernel(name, out_shape, out_dtype, bprop=None):
    lib = kernel_library()
    if lib is None:
        raise RuntimeError("the fast CPU kernels are not available on this machine (no C++ compiler?)")
    return ops.Custom("%s:%s" % (lib, name), out_shape, out_dtype, "aot", bprop=bprop)


def _same(size, stride):
    return -(-size // stride)


def _first(*args):
    return args[0]


def _last(*args):
    return args[-1]


def depthwise_op(stride):
    """``op(x_nhwc, w) -> y_nhwc``: depthwise 3x3 convolution, "same" padding, with its own gradient."""
    def out_shape(x, w):
        return [x[0], _same(x[1], stride), _same(x[2], stride), x[3]]

    grad_x = _kernel("DwBackwardInput%d" % stride, _last, _first)
    grad_w = _kernel("DwBackwardWeight%d" % stride, _last, _first)

    def bprop(x, w, out, dout):
        return grad_x(dout, w, x), grad_w(x, dout, w)

    return _kernel("DwForward%d" % stride, out_shape, _first, bprop)


def im2col_op(stride):
    """``op(x_nhwc) -> cols [B, Ho, Wo, C*9]``: the 3x3 "same" windows, column c*9 + ky*3 + kx."""
    def out_shape(x):
        return [x[0], _same(x[1], stride), _same(x[2], stride), x[3] * 9]

    col2im = _kernel("Col2Im%d" % stride, _last, _first)

    def bprop(x, out, dout):
        return (col2im(dout, x),)

    return _kernel("Im2Col%d" % stride, out_shape, _first, bprop)


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
