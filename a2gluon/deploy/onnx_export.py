"""ONNX export of an exported MXNet model through mx.onnx.export_model, checked with
onnx.checker.  MXNet 1.9.1's exporter rejects Reshape shapes with the special codes -2, -3
and -4 outside a few hard-coded patterns; the video models fold T x H x W with shape
(0, 0, -3, 0), so a general Reshape conversion is registered here as a fallback."""

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


def register_converters():
    """Register the fallback Reshape conversion (once per process).  The exporter's own
    conversion runs first; the general one only replaces its refusal of a shape code."""
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
    _REGISTERED = True


def _drop_initializer_inputs(model):
    """Remove the weights from the graph inputs (the exporter lists them as both); onnxruntime
    then treats them as constants and the model's only input is the data."""
    weights = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(keep)
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
    model = _drop_initializer_inputs(onnx.load(onnx_file))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0]
        raise OnnxExportError(f"the exported ONNX model does not pass onnx.checker: {first}") from None
    onnx.save(model, onnx_file)
    return onnx_file
