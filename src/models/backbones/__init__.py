"""Backbones: feature extractors that return the first SSD feature maps."""
from src.models.backbones.mobilenet_v2 import MobileNetV2Features

__all__ = ["MobileNetV2Features"]
