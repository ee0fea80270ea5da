"""Export a trained Gluon model for deployment: PREFIX-symbol.json + PREFIX-0000.params (what
mx.gluon.SymbolBlock.imports and mx.mod.Module.load read, without a2gluon), optionally
PREFIX.onnx, and beside them PREFIX.json (model, input shape) and PREFIX.classes.json."""

import json
import os
import warnings

import mxnet as mx

from ..profile import default_input_shape
from .loading import ModelLoadError, check_class_names, write_class_names

# The networks downsample by 32; below that the last stages see less than one pixel.
MIN_INPUT_SIZE = 32


class ExportError(ValueError):
    """The model cannot be exported as asked; the message says why and what to do."""


def model_input_shape(model, input_size=None, frames=None):
    """C x H x W (images) or C x T x H x W (video) for `model`: its paper input with the spatial
    size replaced by `input_size` and, for video, the clip length by `frames`."""
    shape = list(default_input_shape(model))
    if input_size is not None:
        shape[-2:] = [input_size, input_size]
    if frames is not None:
        if len(shape) != 4:
            raise ExportError(f"{model} is an image model; --frames applies to video models only")
        shape[1] = frames
    return tuple(shape)


def check_input_shape(net, input_shape, model=None):
    """Raise ExportError when the network cannot run on a batch of `input_shape` (an image too
    small for its downsampling, a wrong number of axes)."""
    out_shapes = None
    if min(input_shape[-2:]) >= MIN_INPUT_SIZE:
        with warnings.catch_warnings():  # a SymbolBlock warns that it cannot type a bare variable
            warnings.simplefilter("ignore")
            sym = net(mx.sym.var("data"))
        try:
            _, out_shapes, _ = sym.infer_shape(data=(1,) + tuple(input_shape))
        except mx.base.MXNetError:
            pass
    if not out_shapes or any(0 in s for s in out_shapes):
        shape = "x".join(map(str, input_shape))
        paper = f" (the paper's input is {'x'.join(map(str, default_input_shape(model)))})" if model else ""
        raise ExportError(
            f"{model or 'the model'} cannot run on input {shape}: too small for its 32x "
            f"downsampling or the wrong layout; use --input-size {MIN_INPUT_SIZE} or more{paper}"
        )


def export_model(loaded, prefix, input_shape, classes=None, onnx=False, epoch=0):
    """Write `loaded` (a LoadedModel from load_gluon_model) under `prefix`.

    Files: PREFIX-symbol.json, PREFIX-EEEE.params, PREFIX.json (model, model_kwargs,
    num_classes, input_size, input_shape, classes), PREFIX.classes.json when class names are
    known (`classes` or the model's), and PREFIX.onnx when `onnx`.  Returns {kind: path}."""
    net = loaded.net
    classes = classes if classes is not None else loaded.classes
    try:
        check_class_names(classes, loaded.num_classes, "the class list")
    except ModelLoadError as err:
        raise ExportError(str(err)) from None
    check_input_shape(net, input_shape, loaded.model)
    if onnx:  # fail before writing anything when the onnx package is missing
        from .onnx_export import register_converters

        register_converters()
    folder = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ExportError(
            f"cannot create the output folder {folder} ({err.strerror}); choose another --out"
        ) from None

    net.hybridize()
    net(mx.nd.zeros((1,) + tuple(input_shape)))
    net.export(prefix, epoch=epoch)
    files = {"symbol": f"{prefix}-symbol.json", "params": f"{prefix}-{epoch:04d}.params"}

    meta = {
        "model": loaded.model,
        "model_kwargs": loaded.model_kwargs,
        "num_classes": loaded.num_classes,
        "input_size": int(input_shape[-1]),
        "input_shape": list(input_shape),
        "classes": list(classes) if classes is not None else None,
    }
    files["meta"] = f"{prefix}.json"
    with open(files["meta"], "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    if classes is not None:
        files["classes"] = write_class_names(f"{prefix}.classes.json", classes)
    if onnx:
        from .onnx_export import export_onnx

        files["onnx"] = export_onnx(files["symbol"], files["params"], input_shape, f"{prefix}.onnx")
    return files
