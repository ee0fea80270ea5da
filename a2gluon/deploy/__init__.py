"""Deployment: load trained or exported models, export symbol/params and ONNX (and the fused fp32
and calibrated INT8 CPU graphs), the graph inference runs, predict."""

from .export import ExportError, export_model, model_input_shape
from .graph import describe_graph, inference_graph
from .int8 import Int8Error, Int8Options, calibration_set, int8_cpu_problem
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
    "Int8Error",
    "Int8Options",
    "LoadedModel",
    "ModelLoadError",
    "build_model",
    "calibration_set",
    "describe_graph",
    "export_model",
    "inference_graph",
    "int8_cpu_problem",
    "load_batch",
    "load_gluon_model",
    "load_symbol_model",
    "module_params",
    "model_input_shape",
    "read_class_names",
    "read_image",
    "read_meta",
]
