"""MindSpore Hub entry point, as the model zoo has it: ``create_network(name, **kwargs)``.

``name`` is a model_name (ssd300, ssd_mobilenet_v1, ssd_vgg16, ssd_mobilenet_v1_fpn, ssd_resnet50_fpn,
ssd_ghostnet); its settings come from ``config/<name>.yaml`` over ``default_config.yaml``, and any other
keyword is a config key (``num_classes=21``, ``img_shape=[300, 300]`` ...). ``is_training`` (default
True) gives the training network, returning (loc, class logits); with ``is_training=False`` the network
is wrapped for inference (attribute ``network``, so checkpoint names keep their ``network.`` prefix) and
returns (loc, class scores after the sigmoid), in inference mode.
"""
import os

from src.config import Config, load_config
from src.feature_maps import derive_layout
from src.inference.detector import SsdDetector
from src.models import build_ssd

ROOT = os.path.dirname(os.path.abspath(__file__))


def network_config(name, **overrides):
    """The Config of model ``name`` (config/<name>.yaml when there is one) with ``overrides`` applied; an
    unpinned layout among them (``feature_size=[]``, ``steps=[]``, ``num_ssd_boxes=0``) is derived from
    ``img_shape`` as on the command line."""
    path = os.path.join(ROOT, "config", "%s.yaml" % name)
    cfg = load_config(["--config_path=%s" % path] if os.path.isfile(path) else [])
    return Config(derive_layout(cfg.replace(model_name=name, **overrides).to_dict()))


def create_network(name, *args, is_training=True, **kwargs):
    """The SSD network ``name``; keywords are config keys (see the module docstring)."""
    if args:
        raise TypeError("create_network takes the model name and keyword arguments only")
    network = build_ssd(network_config(name, **kwargs))
    if is_training:
        network.set_train(True)
        return network
    return SsdDetector(network, decode=False)
