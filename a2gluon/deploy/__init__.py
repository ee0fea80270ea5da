"""Deployment: load trained or exported models, export symbol/params and ONNX, predict."""

from .export import ExportError, export_model, model_input_shape
from .loading import (
    LoadedModel,
    ModelLoadError,
    build_model,
    load_gluon_model,
    load_symbol_model,
    module_params,
    read_class_names,
    read_meta,
)
from .preprocess import ImageReadError, load_batch, read_image

__all__ = [
    "ExportError",
    "ImageReadError",
    "LoadedModel",
    "ModelLoadError",
    "build_model",
    "export_model",
    "load_batch",
    "load_gluon_model",
    "load_symbol_model",
    "module_params",
    "model_input_shape",
    "read_class_names",
    "read_image",
    "read_meta",
]
