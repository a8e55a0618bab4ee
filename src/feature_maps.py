"""The feature-map layout each network makes of its input, in pure Python (no MindSpore: the config is
loaded, and its layout derived, before MindSpore is imported).

A config's anchor layout is ``feature_size`` (per map: its side, or ``[h, w]`` when the map is not
square), ``steps`` (per map: pixels between default-box centres, or ``[step_y, step_x]`` where the two
axes differ) and ``num_ssd_boxes`` (their total). The model zoo's configs pin all three; a config that
leaves them unpinned (``feature_size: []``, ``steps: []``, ``num_ssd_boxes: 0``) has them derived from
``img_shape`` and ``model_name`` when it is loaded (:func:`derive_layout`):

* map sides as the network computes them, per axis: the MobileNet and GhostNet SSDs make their first map
  at stride 16 and the FPN models at stride 8, each further map halving with "same" padding (rounding
  up, :func:`halving_sizes`); ssd_vgg16 follows :func:`vgg_map_sides`. There are ``len(num_default)``
  maps;
* ``steps[k] = img_side / map_side`` per axis, so the default-box centres of every map span the image
  evenly (for 300x300 the first map's step is 15.8 where the model zoo pins 16);
* ``num_ssd_boxes`` = sum over maps of h * w * ``num_default``.

A partly pinned layout is completed: an empty ``feature_size`` is derived as above, empty ``steps`` from
``img_shape`` and ``feature_size``, a 0 ``num_ssd_boxes`` from ``feature_size`` and ``num_default``; a
pinned ``num_ssd_boxes`` that disagrees with a derived ``feature_size`` is an error naming it.
"""
import math

# First stride of the networks whose maps halve from there on ("same" padding rounds up).
FIRST_STRIDE = {"ssd300": 16, "ssd_mobilenet_v1": 16, "ssd_ghostnet": 16,
                "ssd_mobilenet_v1_fpn": 8, "ssd_resnet50_fpn": 8}

UNPINNED_HINT = "--feature_size=[] --steps=[] --num_ssd_boxes=0 derive them from img_shape"


def halving_sizes(side, first_stride, count):
    """Sides of ``count`` maps starting at ``first_stride`` when each stride-2 "same" layer rounds up."""
    sizes, stride = [], 1
    while stride < first_stride:
        side, stride = -(-side // 2), stride * 2
    for _ in range(count):
        sizes.append(side)
        side = -(-side // 2)
    return sizes


def vgg_map_sides(side, count=6):
    """Map sides of SsdVgg16 for an input side: three "same" 2x2 pools, pool4, b8 and b9 (stride 2,
    padding 1), b10 and b11 (3x3 unpadded). Always six maps (``count`` is not used)."""
    conv4_3 = -(-side // 8)
    fc7 = -(-conv4_3 // 2)
    b8 = (fc7 - 1) // 2 + 1
    b9 = (b8 - 1) // 2 + 1
    return [conv4_3, fc7, b8, b9, b9 - 2, b9 - 4]


# Networks whose maps do not simply halve from a first stride: model_name -> map_sides(side, count).
MAP_SIDES = {"ssd_vgg16": vgg_map_sides}


def map_sides(model_name, side, count):
    """Sides of the ``count`` maps ``model_name`` makes of an input side (one axis)."""
    if model_name in MAP_SIDES:
        return MAP_SIDES[model_name](side, count)
    if model_name in FIRST_STRIDE:
        return halving_sizes(side, FIRST_STRIDE[model_name], count)
    raise ValueError("model_name '%s' has no feature-map rule in src/feature_maps.py: pin feature_size, steps and "
                     "num_ssd_boxes" % model_name)


def map_hw(entry):
    """(h, w) of a ``feature_size`` entry: a side (square map) or an [h, w] pair."""
    return (entry[0], entry[1]) if isinstance(entry, (list, tuple)) else (entry, entry)


def step_yx(entry):
    """(step_y, step_x) of a ``steps`` entry: one step for both axes or a [step_y, step_x] pair."""
    return (entry[0], entry[1]) if isinstance(entry, (list, tuple)) else (entry, entry)


def isotropic_step(entry):
    """One step for a ``steps`` entry (the geometric mean of a pair), for sizes that are square in pixels."""
    return math.sqrt(entry[0] * entry[1]) if isinstance(entry, (list, tuple)) else entry


def as_entry(first, second):
    """A plain value when both axes agree, else the [y, x] pair (square maps stay plain ints)."""
    return first if first == second else [first, second]


def feature_sizes(model_name, img_shape, count):
    """``feature_size`` of ``model_name`` for ``img_shape`` [H, W]: per map its side, or [h, w] when the
    two differ; ValueError when the input is too small for the network."""
    height, width = (int(v) for v in img_shape)
    rows, cols = map_sides(model_name, height, count), map_sides(model_name, width, count)
    if len(rows) != count:
        raise ValueError("%s makes %d feature maps but num_default has %d entries (one per map)"
                         % (model_name, len(rows), count))
    if min(rows + cols) < 1:
        raise ValueError("img_shape %s is too small for %s: its maps would be %s x %s"
                         % ([height, width], model_name, rows, cols))
    return [as_entry(h, w) for h, w in zip(rows, cols)]


def steps_for(img_shape, feature_size):
    """``steps`` that spread each map's default-box centres evenly over ``img_shape``: image side / map side."""
    steps = []
    for entry in feature_size:
        rows, cols = map_hw(entry)
        steps.append(as_entry(img_shape[0] / rows, img_shape[1] / cols))
    return steps


def count_boxes(feature_size, num_default):
    """Default boxes of a layout: h * w * boxes per cell, summed over the maps."""
    return sum(map_hw(entry)[0] * map_hw(entry)[1] * boxes for entry, boxes in zip(feature_size, num_default))


def layout(model_name, img_shape, num_default):
    """{feature_size, steps, num_ssd_boxes} of ``model_name`` at ``img_shape``, all derived."""
    sizes = feature_sizes(model_name, img_shape, len(num_default))
    return {"feature_size": sizes, "steps": steps_for(img_shape, sizes),
            "num_ssd_boxes": count_boxes(sizes, num_default)}


def derive_layout(values):
    """``values`` (a config dict) with the unpinned layout keys derived (see the module docstring); a
    fully pinned layout is returned as it is. ValueError (one line naming the key) when it cannot be."""
    if values.get("feature_size") and values.get("steps") and values.get("num_ssd_boxes"):
        return values
    values = dict(values)
    derived_maps = not values.get("feature_size")
    if derived_maps:
        values["feature_size"] = feature_sizes(values["model_name"], values["img_shape"], len(values["num_default"]))
    if not values.get("steps"):
        values["steps"] = steps_for(values["img_shape"], values["feature_size"])
    boxes = count_boxes(values["feature_size"], values["num_default"])
    if not values.get("num_ssd_boxes"):
        values["num_ssd_boxes"] = boxes
    elif derived_maps and values["num_ssd_boxes"] != boxes:
        raise ValueError("num_ssd_boxes is %s but the derived feature_size %s gives %d: pass --num_ssd_boxes=0 to "
                         "derive it too" % (values["num_ssd_boxes"], values["feature_size"], boxes))
    return values
