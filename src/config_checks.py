"""Ranges and shapes of config values, checked once when the config is loaded.

Types are checked as values are parsed (src/config.py); this module catches values of the right type
that cannot work: a negative learning rate (which would ascend the loss), a batch size of 0, a
one-element ``img_shape``, a threshold outside [0, 1], anchor lists of different lengths. Each problem
is one line naming the key, the value and what is allowed, before anything is built or read.
"""


class Rule:
    """A test of one value and the words for what it allows."""

    def __init__(self, test, allowed):
        self.test, self.allowed = test, allowed


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


POSITIVE = Rule(lambda v: _number(v) and v > 0, "a number greater than 0")
NON_NEGATIVE = Rule(lambda v: _number(v) and v >= 0, "a number of at least 0")
UNIT = Rule(lambda v: _number(v) and 0 <= v <= 1, "a number from 0 to 1")
AT_LEAST_ONE = Rule(lambda v: _number(v) and v >= 1, "a number of at least 1")
AT_LEAST_TWO = Rule(lambda v: _number(v) and v >= 2, "at least 2 (the background class counts)")
PAIR = Rule(lambda v: isinstance(v, list) and len(v) == 2 and all(POSITIVE.test(x) for x in v),
            "two numbers greater than 0, e.g. [300,300]")
POSITIVE_LIST = Rule(lambda v: isinstance(v, list) and len(v) > 0 and all(POSITIVE.test(x) for x in v),
                     "a non-empty list of numbers greater than 0")
# feature_size and steps: one entry per map, a number or an [h, w] / [y, x] pair; [] is derived (src/feature_maps.py).
LAYOUT_LIST = Rule(lambda v: isinstance(v, list) and all(POSITIVE.test(x) or PAIR.test(x) for x in v),
                   "a non-empty list of numbers greater than 0 (or [h, w] pairs of them), or [] to derive it from "
                   "img_shape")
BOX_COUNT = Rule(lambda v: _number(v) and v >= 0, "a number greater than 0, or 0 to derive it from the layout")

RULES = {
    "lr": POSITIVE, "batch_size": POSITIVE, "eval_batch_size": POSITIVE, "epoch_size": POSITIVE,
    "num_ssd_boxes": BOX_COUNT, "log_interval": POSITIVE, "save_checkpoint_epochs": POSITIVE,
    "keep_checkpoint_max": POSITIVE, "eval_interval": POSITIVE, "max_boxes": POSITIVE,
    "mindrecord_shards": POSITIVE, "num_parallel_workers": POSITIVE, "shapes_num_train": POSITIVE,
    "shapes_num_val": POSITIVE, "scales_per_octave": POSITIVE, "anchor_scale": POSITIVE, "loss_scale": POSITIVE,
    "global_norm": POSITIVE,
    "lr_init": NON_NEGATIVE, "lr_end_rate": NON_NEGATIVE, "warmup_epochs": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE, "gamma": NON_NEGATIVE, "device_id": NON_NEGATIVE,
    "pre_trained_epoch_size": NON_NEGATIVE, "bn_stat_batches": NON_NEGATIVE, "eval_start_epoch": NON_NEGATIVE,
    "visualize": NON_NEGATIVE, "num_addition_layers": NON_NEGATIVE, "warmup_steps": NON_NEGATIVE,
    "step_budget": NON_NEGATIVE, "lr_reference_batch": NON_NEGATIVE, "verify": NON_NEGATIVE,
    "calibration_images": POSITIVE,
    "match_threshold": UNIT, "nms_threshold": UNIT, "min_score": UNIT, "score_threshold": UNIT,
    "momentum": UNIT, "alpha": UNIT, "min_scale": UNIT, "max_scale": UNIT,
    "max_expand_ratio": AT_LEAST_ONE, "num_classes": AT_LEAST_TWO,
    "img_shape": PAIR, "prior_scaling": PAIR,
    "feature_size": LAYOUT_LIST, "steps": LAYOUT_LIST, "num_default": POSITIVE_LIST,
}

# Lists read side by side, one entry per feature map: they must be as long as feature_size (num_default when
# feature_size is [], to be derived; steps may be [] too).
PER_MAP = ("steps", "num_default", "extras_in_channels", "extras_out_channels")


def check_values(values: dict) -> str:
    """The first problem of ``values`` as one line, or '' when every value is in range."""
    for key, rule in RULES.items():
        if key in values and not rule.test(values[key]):
            return "%s must be %s, got %s" % (key, rule.allowed, values[key])
    maps_key = "feature_size" if values.get("feature_size") or "num_default" not in values else "num_default"
    maps = len(values.get(maps_key, []))
    lengths = [key for key in PER_MAP if key in values and len(values[key]) != maps
               and not (key == "steps" and not values[key])]
    if values.get("anchor_type") == "ssd" and len(values.get("aspect_ratios", [])) != maps:
        lengths.append("aspect_ratios")
    if lengths:
        key = lengths[0]
        return ("%s has %d entries but %s has %d (one per feature map): %s, %s %s"
                % (key, len(values[key]), maps_key, maps, values[key], maps_key, values[maps_key]))
    if values.get("min_scale", 0) > values.get("max_scale", 1):
        return "min_scale must not exceed max_scale, got %s > %s" % (values["min_scale"], values["max_scale"])
    return ""
