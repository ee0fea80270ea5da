"""Backbones that place the attention blocks, and one registry: get_model(name), list_models()."""

from . import baselines, paper  # noqa: F401  (register the models)
from .registry import (
    ATTENTION_CHOICES,
    ModelSpec,
    default_input_shape,
    get_model,
    list_models,
    model_options,
    model_spec,
)
from .resnet import ResNet, Stage, Stem, parse_blocks

__all__ = [
    "ATTENTION_CHOICES",
    "ModelSpec",
    "ResNet",
    "Stage",
    "Stem",
    "default_input_shape",
    "get_model",
    "list_models",
    "model_options",
    "model_spec",
    "parse_blocks",
]
