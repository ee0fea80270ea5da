"""Export a trained Gluon model for deployment: PREFIX-symbol.json + PREFIX-0000.params (what
mx.gluon.SymbolBlock.imports and mx.mod.Module.load read, without a2gluon), optionally
PREFIX.onnx, and beside them PREFIX.json (model, input shape) and PREFIX.classes.json."""

import contextlib
import glob
import json
import os
import re
import warnings

import mxnet as mx

from ..data.layout import write_classes
from ..models import default_input_shape
from .loading import ModelLoadError, check_class_names

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


def check_prefix(prefix):
    """Raise ExportError when `prefix` names a folder (ends with a path separator or is an
    existing directory) rather than the start of the exported files' names."""
    prefix = os.fspath(prefix)
    if not os.path.basename(prefix) or prefix.endswith(("/", os.sep)) or os.path.isdir(prefix):
        example = os.path.join(prefix, "model")
        raise ExportError(
            f"--out {prefix} is a folder; give a file prefix inside it, e.g. --out {example} "
            "(writes model-symbol.json, model-0000.params, ...)"
        )


def export_files(prefix, epoch=0, classes=False, onnx=False):
    """{kind: path} of the files export_model writes under `prefix` (classes: whether it
    writes a class list; onnx: whether it writes PREFIX.onnx)."""
    files = {"symbol": f"{prefix}-symbol.json", "params": f"{prefix}-{epoch:04d}.params"}
    files["meta"] = f"{prefix}.json"
    if classes:
        files["classes"] = f"{prefix}.classes.json"
    if onnx:
        files["onnx"] = f"{prefix}.onnx"
    return files


def earlier_export(prefix):
    """The files an earlier export to `prefix` left, sorted: PREFIX-symbol.json,
    PREFIX-EEEE.params (any epoch), PREFIX.json, PREFIX.classes.json and PREFIX.onnx.  A
    PREFIX-EEEE.params with a .json or .states beside it is a training checkpoint, not an
    export (the trainer names them imagenet-MODEL-EEEE.*), and is left out."""
    prefix = os.fspath(prefix)
    found = [p for p in export_files(prefix, classes=True, onnx=True).values() if not p.endswith(".params")]
    for path in glob.glob(glob.escape(prefix) + "-*.params"):
        stem = path[: -len(".params")]
        if re.fullmatch(r"\d{4,}", stem[len(prefix) + 1 :]) and not any(
            os.path.exists(stem + tail) for tail in (".json", ".states")
        ):
            found.append(path)
    return sorted(p for p in found if os.path.lexists(p))


@contextlib.contextmanager
def _writing(path):
    """Name `path` (the final name, not the temporary one) in an OSError raised while writing it
    (a full disk raises ENOSPC without a file name), and turn MXNet's write errors into an
    ExportError naming it."""
    try:
        yield
    except OSError as err:
        err.filename, err.filename2 = path, None
        raise
    except mx.base.MXNetError as err:
        from ..errors import error_line

        raise ExportError(f"cannot write {path}: {error_line(err)}") from None


def export_model(loaded, prefix, input_shape, classes=None, onnx=False, epoch=0, force=False):
    """Write `loaded` (a LoadedModel from load_gluon_model) under `prefix`.

    Files: PREFIX-symbol.json, PREFIX-EEEE.params, PREFIX.json (model, model_kwargs,
    num_classes, input_size, input_shape, classes), PREFIX.classes.json when class names are
    known (`classes` or the model's), and PREFIX.onnx when `onnx`.  Returns {kind: path}.

    Files of an earlier export to `prefix` (see earlier_export) are an ExportError unless
    `force`; then the new files replace them and those it does not write are removed, so that
    no file of the earlier export is left beside the new ones.  Everything is written under
    temporary names in the output folder, the symbol and params read back (MXNet does not see
    a write that a full disk cuts short at close), and renamed when complete: an interrupted or
    failed export leaves no partial file.  When only the ONNX conversion fails, the MXNet files are
    still put in place before the OnnxExportError is raised."""
    prefix = os.fspath(prefix)
    check_prefix(prefix)
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
    files = export_files(prefix, epoch, classes is not None, onnx)
    existing = sorted(set(earlier_export(prefix)) | {p for p in files.values() if os.path.lexists(p)})
    if existing and not force:
        more = f" (and {len(existing) - 1} more files of an earlier export)" if len(existing) > 1 else ""
        raise ExportError(f"{existing[0]} exists{more}; use --force (force=True) to replace that export")
    folder = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ExportError(
            f"cannot create the output folder {folder} ({err.strerror}); choose another --out"
        ) from None

    tmp_prefix = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(prefix)}")
    tmp = export_files(tmp_prefix, epoch, classes is not None, onnx)
    meta = {
        "model": loaded.model,
        "model_kwargs": loaded.model_kwargs,
        "num_classes": loaded.num_classes,
        "input_size": int(input_shape[-1]),
        "input_shape": list(input_shape),
        "classes": list(classes) if classes is not None else None,
    }
    onnx_error = None
    try:
        net.hybridize()
        net(mx.nd.zeros((1,) + tuple(input_shape)))
        with _writing(files["params"]):
            net.export(tmp_prefix, epoch=epoch)
        for kind, read in (("symbol", mx.sym.load), ("params", mx.nd.load)):
            try:  # MXNet ignores a failing close: a full disk can cut off the end unnoticed
                read(tmp[kind])
            except mx.base.MXNetError:
                raise ExportError(
                    f"{files[kind]} was not written completely (is the disk full?); free some space "
                    "and export again"
                ) from None
        with _writing(files["meta"]), open(tmp["meta"], "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        if classes is not None:
            with _writing(files["classes"]):
                write_classes(tmp["classes"], classes)
        if onnx:
            from .onnx_export import OnnxExportError, export_onnx

            try:
                export_onnx(tmp["symbol"], tmp["params"], input_shape, tmp["onnx"])
            except OnnxExportError as err:
                onnx_error = err
                del files["onnx"]
        for kind, path in files.items():
            with _writing(path):
                os.replace(tmp[kind], path)
        for path in existing:
            if path not in files.values():
                os.remove(path)
    finally:
        for path in tmp.values():
            if os.path.lexists(path):
                os.remove(path)
    if onnx_error is not None:
        raise onnx_error
    return files
