"""One optimisation step: loss, gradients, loss scaling, gradient all-reduce, clipping by global norm
(``use_global_norm``), optimizer update.

Loss scaling by target (MindSpore 2.10): Ascend and GPU use a dynamic scale that halves on overflow
and skips that update; the CPU backend supports only a fixed scale, which is applied to the loss and
removed from the gradients here, so the optimizer sees true gradients whatever the target. A float32
network on CPU gets no scale at all: there a fixed scale changes no gradient (float32 neither underflows
nor overflows at these magnitudes), and scaling, unscaling and checking each gradient cost three
operator launches per parameter, a visible share of a training step (measured in benchmarks/README.md).
Its step reports the loss's finiteness; a non-finite gradient shows up as a
non-finite loss one step later.
"""
import mindspore as ms
from mindspore import nn, ops
from mindspore.amp import DynamicLossScaler, StaticLossScaler, all_finite


def make_optimizer(network, learning_rates, momentum, weight_decay):
    """Momentum with weight decay on convolution and dense weights only (not on BN or biases)."""
    params = network.trainable_params()
    no_decay = ("beta", "gamma", "bias")
    decayed = [p for p in params if not any(k in p.name for k in no_decay)]
    others = [p for p in params if any(k in p.name for k in no_decay)]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]
    return nn.Momentum(groups, learning_rate=ms.Tensor(learning_rates, ms.float32), momentum=momentum)


def make_scaler(device_target, loss_scale, float16=False):
    """``(scaler, dynamic)``: dynamic loss scaling on Ascend/GPU; on CPU a fixed scale (its only
    supported form) for a float16 network, and None (no scaling) for a float32 one."""
    if device_target in ("Ascend", "GPU"):
        return DynamicLossScaler(float(loss_scale), 2, 1000), True
    if float16:
        return StaticLossScaler(float(loss_scale)), False
    return None, False


class TrainStep(nn.Cell):
    """``step(*batch) -> (loss, finite)``: with a scaler the update runs only when the gradients are
    finite; without one (float32 on CPU) it always runs and ``finite`` is the loss's."""

    def __init__(self, net_with_loss, optimizer, scaler, dynamic, distributed=False, clip_norm=None):
        super().__init__(auto_prefix=False)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.net_with_loss = net_with_loss
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.scaler = scaler
        self.dynamic = dynamic
        self.grad = ops.GradOperation(get_by_list=True, sens_param=scaler is not None)
        self.distributed = distributed
        self.reducer = nn.DistributedGradReducer(self.weights) if distributed else None

    def construct(self, *inputs):
        if self.scaler is None:
            return self.unscaled_step(*inputs)
        loss = self.net_with_loss(*inputs)
        sens = ops.fill(loss.dtype, loss.shape, self.scaler.scale_value)
        grads = self.grad(self.net_with_loss, self.weights)(*inputs, sens)
        if self.distributed:
            grads = self.reducer(grads)
        grads = self.scaler.unscale(grads)
        finite = all_finite(grads)
        if self.dynamic:
            self.scaler.adjust(finite)
        if finite:
            loss = ops.depend(loss, self.optimizer(self.clip(grads)))
        return loss, finite

    def clip(self, grads):
        """The gradients scaled together to a global L2 norm of at most ``clip_norm`` (``use_global_norm``,
        as the model zoo's FPN recipes train); unchanged without it."""
        if self.clip_norm is None:
            return grads
        return ops.clip_by_global_norm(grads, self.clip_norm)

    def unscaled_step(self, *inputs):
        loss = self.net_with_loss(*inputs)
        grads = self.grad(self.net_with_loss, self.weights)(*inputs)
        if self.distributed:
            grads = self.reducer(grads)
        return ops.depend(loss, self.optimizer(self.clip(grads))), ops.isfinite(loss)
