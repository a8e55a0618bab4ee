"""Recompute BatchNorm statistics for the final weights ("precise BN").

BatchNorm normalises with batch statistics in training and with moving averages in inference. The
moving averages trail the weights (with momentum 0.97 they average the last ~30 steps), so in a
short run, where the weights still move fast when training ends, they describe an older network:
on the shapes set, 120 steps at 160x160 gave mAP 0.0007 with the running averages and 0.14 with
statistics recomputed for the final weights (the same as evaluating with batch statistics).

:func:`recompute_batch_norm_statistics` runs the network in training mode (no gradients, no update)
over a few batches of training data and replaces every BatchNorm layer's moving mean and variance by
the average of its batch statistics. Each layer updates its moving averages as
``m <- (1 - w) m + w b``, so starting from zero and dividing by ``1 - (1 - w)^K`` after ``K`` batches
gives a normalised average of the ``K`` batch statistics, without reaching into the layers' kernels.
"""
import mindspore as ms
import numpy as np


def batch_norm_layers(network):
    """Cells with moving statistics and a ``momentum`` attribute (the weight of a new batch)."""
    return [cell for _, cell in network.cells_and_names()
            if hasattr(cell, "moving_mean") and hasattr(cell, "moving_variance") and hasattr(cell, "momentum")]


def _set(param, value):
    param.set_data(ms.Tensor(np.asarray(value, dtype=np.float32)))


def recompute_batch_norm_statistics(network, images):
    """Replace the moving statistics of ``network``'s BatchNorm layers by their average over the
    batches ``images`` (an iterable of input tensors). Returns the number of batches used; with none,
    nothing changes."""
    layers = batch_norm_layers(network)
    if not layers:
        return 0
    saved = [(cell.moving_mean.asnumpy(), cell.moving_variance.asnumpy()) for cell in layers]
    for cell in layers:
        _set(cell.moving_mean, np.zeros(cell.moving_mean.shape))
        _set(cell.moving_variance, np.zeros(cell.moving_variance.shape))
    was_training = network.training
    network.set_train(True)
    count = 0
    for image in images:
        network(image)
        count += 1
    network.set_train(was_training)
    for cell, (mean, var) in zip(layers, saved):
        if count == 0:
            _set(cell.moving_mean, mean)
            _set(cell.moving_variance, var)
            continue
        scale = 1.0 - (1.0 - float(cell.momentum)) ** count
        _set(cell.moving_mean, cell.moving_mean.asnumpy() / scale)
        _set(cell.moving_variance, cell.moving_variance.asnumpy() / scale)
    return count
