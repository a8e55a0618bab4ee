"""Per-step learning rate: linear warm-up from ``lr_init`` to ``lr``, then cosine decay to
``lr * lr_end_rate`` (the model zoo's schedule)."""
import math

import numpy as np


def learning_rates(lr_init, lr_max, lr_end_rate, warmup_epochs, total_epochs, steps_per_epoch):
    """float32 array with one learning rate per training step of the whole run."""
    total = int(total_epochs * steps_per_epoch)
    warmup = int(warmup_epochs * steps_per_epoch)
    lr_end = lr_max * lr_end_rate
    rates = np.empty(total, dtype=np.float32)
    for step in range(total):
        if step < warmup:
            rates[step] = lr_init + (lr_max - lr_init) * step / warmup
        else:
            progress = (step - warmup) / max(1, total - warmup)
            rates[step] = lr_end + (lr_max - lr_end) * (1 + math.cos(math.pi * progress)) / 2
    return rates


def learning_rates_from_config(cfg, steps_per_epoch):
    return learning_rates(cfg.lr_init, cfg.lr, cfg.lr_end_rate, cfg.warmup_epochs, cfg.epoch_size, steps_per_epoch)
