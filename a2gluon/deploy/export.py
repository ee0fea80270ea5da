"""Export a trained Gluon model for deployment: PREFIX-symbol.json + PREFIX-0000.params (what
mx.gluon.SymbolBlock.imports and mx.mod.Module.load read, without a2gluon), optionally
PREFIX.onnx, and beside them PREFIX.json (model, input shape) and PREFIX.classes.json.

Variants, each a complete export of its own under PREFIX-VARIANT (symbol, params, meta, class
list): PREFIX-fused (oneDNN's fused fp32 graph) and PREFIX-int8 (the calibrated INT8 graph, and
with ONNX also PREFIX-int8.onnx from onnxruntime's static quantization)."""

import contextlib
import glob
import json
import os
import re
import warnings

import mxnet as mx
import numpy as np

from ..data.layout import write_classes
from ..models import default_input_shape
from .graph import fuse, graph_kind, trace
from .loading import ModelLoadError, check_class_names

# The networks downsample by 32; below that the last stages see less than one pixel.
MIN_INPUT_SIZE = 32


class ExportError(ValueError):
    """The model cannot be exported as asked; the message says why and what to do."""


# What a video model's test views are made with (a2gluon.data.video.video_views): recorded by
# train-video in the checkpoint's args, carried into the export's meta.
VIEW_SETTINGS = ("new_length", "new_step", "input_size", "short_side", "num_clips", "num_crops")


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


# One example larger than this (float32) is a typing error, not a model input (a 64 x 224 x 224
# clip is 38 MiB); MXNet would try to allocate it and crash.
MAX_INPUT_BYTES = 2**30


def _symbol(net):
    with warnings.catch_warnings():  # a SymbolBlock warns that it cannot type a bare variable
        warnings.simplefilter("ignore")
        return net(mx.sym.var("data"))


def time_stride(net):
    """How many times video network `net` (a Gluon block, or an export's SymbolBlock) shortens
    the time axis before its global pooling, read off the shapes in its graph; None when they
    cannot be read."""
    return _time_stride(_symbol(net))


def _time_stride(sym):
    probe = 64  # frames and pixels: enough for every stride, nothing is computed
    internals = sym.get_internals()
    try:
        _, shapes, _ = internals.infer_shape(data=(1, 3, probe, probe, probe))
    except mx.base.MXNetError:
        return None
    frames = [
        shape[2]
        for name, shape in zip(internals.list_outputs(), shapes)
        if name.endswith("_output") and len(shape) == 5 and shape[-1] > 1  # not weights, not pooled
    ]
    return probe // min(frames) if frames else None


def check_input_shape(net, input_shape, model=None):
    """Raise ExportError when the network cannot run on a batch of `input_shape` (an image too
    small for its downsampling, a wrong number of axes, one example of more than MAX_INPUT_BYTES)
    or, for a clip (C x T x H x W), when T is less than the network downsamples time by (its
    temporal strides would read padding only)."""
    size = 4 * int(np.prod(input_shape, dtype=np.int64))
    if size > MAX_INPUT_BYTES:
        raise ExportError(
            f"an input of {'x'.join(map(str, input_shape))} takes {size / 2**30:.1f} GiB per example "
            f"(more than {MAX_INPUT_BYTES // 2**30} GiB); give the --input-size / --frames it is used at"
        )
    sym = _symbol(net)
    out_shapes = None
    if min(input_shape[-2:]) >= MIN_INPUT_SIZE:
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
    stride = _time_stride(sym) if len(input_shape) == 4 else None
    if stride and input_shape[1] < stride:
        paper = f" (the paper's clip is {default_input_shape(model)[1]} frames)" if model else ""
        raise ExportError(
            f"{model or 'the model'} downsamples time by {stride}: a clip of {input_shape[1]} frame(s) is "
            f"shorter than that, its temporal strides would read padding; give --new-length {stride} or "
            f"more (export: --frames){paper}"
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


VARIANTS = ("fused", "int8")  # PREFIX-VARIANT-symbol.json, ...: the graphs besides the plain one


def export_files(prefix, epoch=0, classes=False, onnx=False, variants=(), int8_onnx=False):
    """{kind: path} of the files export_model writes under `prefix` (classes: whether it
    writes a class list; onnx: whether it writes PREFIX.onnx; variants: which of VARIANTS it
    writes, as kinds 'VARIANT-symbol', 'VARIANT-params', 'VARIANT-meta', 'VARIANT-classes';
    int8_onnx: whether it writes PREFIX-int8.onnx, kind 'int8-onnx')."""
    files = {"symbol": f"{prefix}-symbol.json", "params": f"{prefix}-{epoch:04d}.params"}
    files["meta"] = f"{prefix}.json"
    if classes:
        files["classes"] = f"{prefix}.classes.json"
    if onnx:
        files["onnx"] = f"{prefix}.onnx"
    for variant in variants:
        stem = f"{prefix}-{variant}"
        files[f"{variant}-symbol"] = f"{stem}-symbol.json"
        files[f"{variant}-params"] = f"{stem}-{epoch:04d}.params"
        files[f"{variant}-meta"] = f"{stem}.json"
        if classes:
            files[f"{variant}-classes"] = f"{stem}.classes.json"
    if int8_onnx:
        files["int8-onnx"] = f"{prefix}-int8.onnx"
    return files


def earlier_export(prefix):
    """The files an earlier export to `prefix` left, sorted: PREFIX-symbol.json,
    PREFIX-EEEE.params (any epoch), PREFIX.json, PREFIX.classes.json and PREFIX.onnx, and the
    same of the variants PREFIX-fused and PREFIX-int8 (with PREFIX-int8.onnx).  A
    PREFIX-EEEE.params with a .json or .states beside it is a training checkpoint, not an
    export (the trainer names them imagenet-MODEL-EEEE.* or video-MODEL-EEEE.*), and is left out."""
    prefix = os.fspath(prefix)
    every = export_files(prefix, classes=True, onnx=True, variants=VARIANTS, int8_onnx=True)
    found = [p for p in every.values() if not p.endswith(".params")]
    numbered = re.compile("(?:(?:" + "|".join(VARIANTS) + r")-)?\d{4,}")
    for path in glob.glob(glob.escape(prefix) + "-*.params"):
        stem = path[: -len(".params")]
        if numbered.fullmatch(stem[len(prefix) + 1 :]) and not any(
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


def _save_graph(sym, args, aux, files, tmp, kind):
    """Write a symbol and its arrays to tmp[KIND-symbol] / tmp[KIND-params] and read both back."""
    with _writing(files[f"{kind}-params"]):
        sym.save(tmp[f"{kind}-symbol"])
        arrays = {f"arg:{k}": v for k, v in args.items()}
        arrays.update({f"aux:{k}": v for k, v in aux.items()})
        mx.nd.save(tmp[f"{kind}-params"], arrays)
    _read_back(files, tmp, kind)


def _read_back(files, tmp, kind=None):
    """Load the symbol and params just written (MXNet ignores a failing close: a full disk can
    cut off the end unnoticed)."""
    for part, read in (("symbol", mx.sym.load), ("params", mx.nd.load)):
        key = f"{kind}-{part}" if kind else part
        try:
            read(tmp[key])
        except mx.base.MXNetError:
            raise ExportError(
                f"{files[key]} was not written completely (is the disk full?); free some space and "
                "export again"
            ) from None


def _write_meta(meta, files, tmp, kind=None, classes=None):
    key = f"{kind}-meta" if kind else "meta"
    with _writing(files[key]), open(tmp[key], "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    if classes is not None:
        key = f"{kind}-classes" if kind else "classes"
        with _writing(files[key]):
            write_classes(tmp[key], classes)


def _check_int8(loaded, input_shape, int8):
    """Raise Int8Error when INT8 cannot be exported as asked (video model, calibration images
    of another size, a CPU without INT8 support)."""
    from .int8 import Int8Error, require_int8_cpu

    if len(input_shape) != 3:
        raise Int8Error(
            f"{loaded.model or 'the model'} is a video model; INT8 export (calibrated on images) is for "
            "image models"
        )
    got = tuple(int8.calibration.data.shape[1:])
    if got != tuple(input_shape):
        raise Int8Error(
            f"the calibration images are {'x'.join(map(str, got))} but the export's input is "
            f"{'x'.join(map(str, input_shape))}; prepare them at the export's --input-size"
        )
    require_int8_cpu()


def export_model(
    loaded, prefix, input_shape, classes=None, onnx=False, epoch=0, force=False, fused=False, int8=None
):
    """Write `loaded` (a LoadedModel from load_gluon_model) under `prefix`.

    Files: PREFIX-symbol.json, PREFIX-EEEE.params, PREFIX.json (model, model_kwargs,
    num_classes, input_size, input_shape, classes, graph), PREFIX.classes.json when class names
    are known (`classes` or the model's), and PREFIX.onnx when `onnx`.  With `fused`, the same
    four files of oneDNN's fused fp32 graph under PREFIX-fused; with `int8` (an
    a2gluon.deploy.int8.Int8Options), those of the calibrated INT8 graph under PREFIX-int8, whose
    meta also records the calibration and the INT8 graph's top-1 agreement with the fp32 one on
    (up to 64 of) the calibration images, and with `int8.onnx` PREFIX-int8.onnx.  Returns
    {kind: path} (kinds as export_files names them).

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
    if int8 is not None:
        _check_int8(loaded, input_shape, int8)
    if onnx:  # fail before writing anything when the onnx package is missing
        from .onnx_export import register_converters

        register_converters()
    variants = [name for name, wanted in (("fused", fused), ("int8", int8 is not None)) if wanted]
    int8_onnx = bool(int8 is not None and int8.onnx and onnx)
    files = export_files(prefix, epoch, classes is not None, onnx, variants, int8_onnx)
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
    tmp = export_files(tmp_prefix, epoch, classes is not None, onnx, variants, int8_onnx)
    meta = {
        "model": loaded.model,
        "model_kwargs": loaded.model_kwargs,
        "num_classes": loaded.num_classes,
        "input_size": int(input_shape[-1]),
        "input_shape": list(input_shape),
        "classes": list(classes) if classes is not None else None,
        "weights": "ema" if getattr(loaded, "ema", False) else "model",
    }
    recorded = (loaded.meta or {}).get("args") or {}
    if len(input_shape) == 4:  # a video model: its test views, for eval-video and predict
        meta["args"] = {k: recorded[k] for k in VIEW_SETTINGS if k in recorded}
    onnx_error = None
    try:
        net.hybridize()
        net(mx.nd.zeros((1,) + tuple(input_shape)))
        with _writing(files["params"]):
            net.export(tmp_prefix, epoch=epoch)
        _read_back(files, tmp)
        _write_meta(dict(meta, graph="fp32"), files, tmp, classes=classes)
        if variants:
            sym, args, aux = trace(net)
        if fused:
            fused_sym, fused_args = fuse(sym, args)
            _save_graph(fused_sym, fused_args, aux, files, tmp, "fused")
            _write_meta(dict(meta, graph=graph_kind(fused_sym)), files, tmp, "fused", classes)
        if int8 is not None:
            from .int8 import agreement, quantize

            graph = quantize(sym, args, aux, int8.calibration, int8.mode, int8.keep_fp32)
            _save_graph(graph.sym, graph.args, graph.aux, files, tmp, "int8")
            check = agreement(net, graph, int8.calibration.data[: int8.check_images])
            info = dict(graph.calibration, check_images=check["images"], check_top1_agreement=check["top1"])
            _write_meta(dict(meta, graph="int8", int8=info), files, tmp, "int8", classes)
        if onnx:
            from .onnx_export import OnnxExportError, export_onnx

            try:
                export_onnx(tmp["symbol"], tmp["params"], input_shape, tmp["onnx"])
            except OnnxExportError as err:
                onnx_error = err
                del files["onnx"]
                files.pop("int8-onnx", None)
            if "int8-onnx" in files:
                from .onnx_export import quantize_onnx

                try:
                    quantize_onnx(tmp["onnx"], int8.calibration.data, tmp["int8-onnx"], int8.mode)
                except OnnxExportError as err:
                    onnx_error = err
                    del files["int8-onnx"]
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
