"""ONNX export of an exported MXNet model through mx.onnx.export_model, checked with
onnx.checker, and its INT8 form through onnxruntime's static quantization.

Conversions registered here (register_converters), each where MXNet 1.9.1's own is wrong or
missing for these models:

- Reshape: the exporter rejects the special codes -2, -3 and -4 outside a few hard-coded
  patterns; the video models fold T x H x W with shape (0, 0, -3, 0), so a general Reshape
  conversion is the fallback.
- SliceChannel (`split`, the A^2 block's fused phi/theta/rho projection): the exporter labels the
  model with the onnx package's newest opset (23 with onnx 1.18) but writes opset-13 nodes; its
  Split has neither the `split` sizes nor, as opset 18 requires, `num_outputs`, and onnxruntime
  rejects it.  This one writes `num_outputs` from opset 18 on.
- softmax on an axis other than the last: the exporter divides by a temperature of 1 first
  and leaves an unused initializer behind; this one writes the Softmax alone.

After conversion the initializers no node reads are dropped (onnxruntime warns about each)."""

import logging
import os

import numpy as np


class OnnxExportError(RuntimeError):
    """ONNX export is unavailable or failed; the message says why and what to do."""


_REGISTERED = False


def _require_onnx():
    try:
        import onnx  # noqa: F401
        from mxnet import onnx as mx_onnx  # noqa: F401
    except ImportError as err:
        raise OnnxExportError(
            f"ONNX export needs the onnx package ({err}); install the extra: pip install -e '.[onnx]'"
        ) from None


def _general_reshape_nodes(node, kwargs):
    """ONNX nodes computing MXNet's Reshape for any mix of the codes 0, -1, -2, -3, -4 (reverse
    False): the target shape is assembled from the input's runtime shape, so batch sizes stay
    free.  Returns None for cases this does not handle (reverse=True)."""
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import (
        convert_string_to_list,
        create_tensor,
        get_inputs,
    )
    from onnx.helper import make_node

    name, input_nodes, attrs = get_inputs(node, kwargs)
    if attrs.get("reverse", "False") == "True":
        return None
    target = convert_string_to_list(attrs["shape"])
    init = kwargs["initializer"]
    nodes = [make_node("Shape", [input_nodes[0]], [f"{name}_in_shape"])]
    pieces = []
    counter = [0]

    def const(values):
        cname = f"{name}_c{counter[0]}"
        counter[0] += 1
        create_tensor(list(values), cname, init)
        return cname

    def dims(begin, end=None):
        out = f"{name}_d{counter[0]}"
        counter[0] += 1
        ends = const([end if end is not None else np.iinfo(np.int64).max])
        nodes.append(make_node("Slice", [f"{name}_in_shape", const([begin]), ends], [out]))
        return out

    src, i = 0, 0
    while i < len(target):
        code = target[i]
        if code > 0 or code == -1:
            pieces.append(const([code]))
            src += 1
        elif code == 0:
            pieces.append(dims(src, src + 1))
            src += 1
        elif code == -2:
            pieces.append(dims(src))
        elif code == -3:
            merged = f"{name}_m{counter[0]}"
            counter[0] += 1
            nodes.append(make_node("ReduceProd", [dims(src, src + 2)], [merged], keepdims=1))
            pieces.append(merged)
            src += 2
        elif code == -4:
            first, second = target[i + 1], target[i + 2]
            if first <= 0 and second <= 0 or 0 in (first, second):
                return None
            whole = dims(src, src + 1)
            if first == -1 or second == -1:
                known = const([second if first == -1 else first])
                other = f"{name}_q{counter[0]}"
                counter[0] += 1
                nodes.append(make_node("Div", [whole, known], [other]))
                pieces += [other, known] if first == -1 else [known, other]
            else:
                pieces += [const([first]), const([second])]
            src += 1
            i += 2
        else:
            return None
        i += 1
    nodes.append(make_node("Concat", pieces, [f"{name}_shape"], axis=0))
    nodes.append(make_node("Reshape", [input_nodes[0], f"{name}_shape"], [name], name=name))
    return nodes


def _split_nodes(node, kwargs):
    """ONNX nodes for SliceChannel (equal parts along `axis`, squeezed when squeeze_axis): Split
    with `num_outputs` from opset 18 on (before 18, no sizes means equal parts)."""
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import create_tensor, get_inputs
    from onnx.helper import make_node

    name, input_nodes, attrs = get_inputs(node, kwargs)
    count, axis = int(attrs["num_outputs"]), int(attrs.get("axis", 1))
    squeeze = attrs.get("squeeze_axis", "False") in ("True", "true", "1")
    outputs = [f"{name}{i}" for i in range(count)]
    parts = [f"{out}_" for out in outputs] if squeeze else outputs
    extra = {"num_outputs": count} if kwargs.get("opset_version", 13) >= 18 else {}
    nodes = [make_node("Split", [input_nodes[0]], parts, axis=axis, name=name, **extra)]
    if squeeze:
        create_tensor([axis], f"{name}_axis", kwargs["initializer"])
        nodes += [make_node("Squeeze", [part, f"{name}_axis"], [out]) for part, out in zip(parts, outputs)]
    return nodes


def _softmax_nodes(node, kwargs):
    """A lone ONNX Softmax for MXNet's softmax without temperature or lengths (None otherwise)."""
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import get_inputs
    from onnx.helper import make_node

    name, input_nodes, attrs = get_inputs(node, kwargs)
    if attrs.get("temperature", "None") not in ("None", "1", "1.0") or attrs.get("use_length") == "True":
        return None
    return [make_node("Softmax", [input_nodes[0]], [name], axis=int(attrs.get("axis", -1)), name=name)]


def _replace_conversion(graph, op, make_nodes):
    """Put `make_nodes(node, kwargs)` before the exporter's own conversion of `op` (which runs
    when it returns None or refuses) at every opset the exporter might pick it from."""
    for table in graph.registry_.values():
        if op not in table:
            continue
        builtin = table[op]

        def convert(node, builtin=builtin, **kwargs):
            try:
                nodes = make_nodes(node, kwargs)
            except AttributeError:
                nodes = None
            return nodes if nodes is not None else builtin(node, **kwargs)

        table[op] = convert


def register_converters():
    """Register the conversions of the module docstring (once per process).  For Reshape the
    exporter's own conversion runs first and the general one only replaces its refusal of a
    shape code; SliceChannel and softmax are converted here (softmax with a temperature or
    lengths by the exporter)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _require_onnx()
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    builtin = MXNetGraph.registry_[12]["Reshape"]

    def convert_reshape(node, **kwargs):
        try:
            return builtin(node, **kwargs)
        except AttributeError as err:
            nodes = _general_reshape_nodes(node, kwargs)
            if nodes is None:
                raise err from None
            return nodes

    MXNetGraph.registry_[12]["Reshape"] = convert_reshape
    _replace_conversion(MXNetGraph, "SliceChannel", _split_nodes)
    _replace_conversion(MXNetGraph, "softmax", _softmax_nodes)
    _REGISTERED = True


def _drop_initializer_inputs(model):
    """Remove the weights from the graph inputs (the exporter lists them as both); onnxruntime
    then treats them as constants and the model's only input is the data."""
    weights = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model


def _drop_unused_initializers(model):
    """Remove the initializers no node reads (converters leave constants behind that only some
    of their branches use; onnxruntime warns about every one)."""
    used = {name for node in model.graph.node for name in node.input}
    used |= {out.name for out in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


def export_onnx(symbol_file, params_file, input_shape, onnx_file, dynamic_batch=True):
    """Convert PREFIX-symbol.json + PREFIX-EEEE.params to `onnx_file` for batches of
    `input_shape` (C x H x W or C x T x H x W; the batch axis is free when dynamic_batch),
    check it with onnx.checker and return its path."""
    register_converters()
    import mxnet as mx
    import onnx

    shape = (1,) + tuple(input_shape)
    try:
        mx.onnx.export_model(
            symbol_file,
            params_file,
            [shape],
            [np.float32],
            onnx_file,
            dynamic=dynamic_batch,
            dynamic_input_shapes=[(None,) + shape[1:]] if dynamic_batch else None,
        )
    except (AttributeError, NotImplementedError, ValueError, KeyError) as err:
        raise OnnxExportError(
            f"MXNet's ONNX exporter cannot convert this model ({err}); the symbol and params "
            "files were written and can be used with MXNet"
        ) from None
    model = _drop_unused_initializers(_drop_initializer_inputs(onnx.load(onnx_file)))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0]
        raise OnnxExportError(f"the exported ONNX model does not pass onnx.checker: {first}") from None
    onnx.save(model, onnx_file)
    return onnx_file


def quantize_onnx(onnx_file, data, out_file, calib_mode="naive", batch=32):
    """Write `out_file`: onnxruntime's static INT8 quantization of the fp32 ONNX model
    `onnx_file`, calibrated on `data` (N x C x H x W, as the model takes it): QDQ format, uint8
    activations and per-channel int8 weights (onnxruntime's choice for x86), thresholds from
    min/max ('naive') or entropy.  OnnxExportError when onnxruntime's quantization tools are
    missing or fail."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as err:
        raise OnnxExportError(
            f"INT8 ONNX needs onnxruntime's quantization tools, which failed to import ({err}); "
            "install ml_dtypes==0.4.1 (the last release that works with numpy 1.23)"
        ) from None
    arrays = data.asnumpy() if hasattr(data, "asnumpy") else np.asarray(data)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.parts = iter([arrays[i : i + batch] for i in range(0, len(arrays), batch)])

        def get_next(self):
            part = next(self.parts, None)
            return None if part is None else {"data": part}

    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = CalibrationMethod.Entropy if calib_mode == "entropy" else CalibrationMethod.MinMax
    prepared = f"{out_file}.prep.onnx"
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs a warning per rank-1 weight
    try:
        # onnxruntime's graph optimisation first (BatchNorm folded into the convolutions, the
        # projection's weight concatenation folded), as its quantization guide asks
        quant_pre_process(onnx_file, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared,
            out_file,
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
    except Exception as err:  # noqa: BLE001  (onnxruntime raises many kinds)
        from ..errors import error_line

        raise OnnxExportError(f"onnxruntime's INT8 quantization failed: {error_line(err)}") from None
    finally:
        logging.getLogger().setLevel(quiet)
        if os.path.exists(prepared):
            os.remove(prepared)
    return out_file
