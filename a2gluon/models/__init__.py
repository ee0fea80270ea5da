"""Backbones that place the attention blocks, and one registry: get_model(name), list_models()."""

from . import baselines, paper  # noqa: F401  (register the models)
from .registry import get_model, list_models
from .resnet import ResNet, Stage, Stem, parse_blocks

__all__ = ["ResNet", "Stage", "Stem", "get_model", "list_models", "parse_blocks"]
