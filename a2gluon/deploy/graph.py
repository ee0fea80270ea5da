"""Inference graphs on CPU: a network as an MXNet symbol with its arrays, the A^2 blocks' weight
concatenations folded into constants, oneDNN's fused fp32 graph (convolution + BatchNorm + ReLU
+ residual add folded into one operator), what kind of graph a symbol is, and the graph a
loaded model runs for inference.

The fused graph is what `sym.get_backend_symbol('MKLDNN')` (the partitioning behind
`HybridBlock.optimize_for(x, backend='MKLDNN')`) makes of the plain one.  It holds `_sg_mkldnn_*`
operators, which any MXNet 1.9.1 build with oneDNN (the pip wheels for Linux) loads with
`mx.gluon.SymbolBlock.imports`; MXNet's ONNX exporter cannot convert them, so ONNX is always
written from the plain graph."""

import json
import warnings

import mxnet as mx

# kind -> how eval and predict describe it
GRAPH_KINDS = {
    "gluon": "fp32 Gluon graph, unfused",
    "fp32": "fp32 symbol graph, unfused",
    "fp32-fused": "fp32 oneDNN-fused graph: convolution + BatchNorm + ReLU + add folded",
    "int8": "INT8 oneDNN graph, attention products and softmax in fp32",
}
_QUANTIZE_OPS = ("_contrib_quantize_v2", "_contrib_quantize", "_contrib_requantize", "_contrib_dequantize")


def trace(net):
    """(symbol, arg arrays, aux arrays) of a Gluon network (or SymbolBlock) with one input
    named `data`; the arrays are the parameters' values on the CPU."""
    with warnings.catch_warnings():  # a SymbolBlock warns that it cannot type a bare variable
        warnings.simplefilter("ignore")
        sym = net(mx.sym.var("data"))
    if isinstance(sym, (list, tuple)):
        sym = mx.sym.Group(list(sym))
    params = net.collect_params()
    aux_names = set(sym.list_auxiliary_states())
    args, aux = {}, {}
    for name in sym.list_inputs():
        if name == "data":
            continue
        param = params[name]
        value = param.data(param.list_ctx()[0]).copyto(mx.cpu())
        (aux if name in aux_names else args)[name] = value
    return sym, args, aux


def fold_constant_concats(sym, args):
    """`sym` with every Concat of parameters replaced by one parameter holding their
    concatenation, named as the Concat node: the A^2 block's `..._proj_weight` and `_proj_bias`
    (phi, theta and rho's weights, concatenated at every step in training) become constants
    that oneDNN's convolution caches and INT8 quantization converts once.  Returns
    (symbol, args) with the args the new symbol uses."""
    graph = json.loads(sym.tojson())
    nodes, args = graph["nodes"], dict(args)
    for index, node in enumerate(nodes):
        sources = [nodes[edge[0]] for edge in node["inputs"]]
        if node["op"] != "Concat" or not sources:
            continue
        if any(s["op"] != "null" or s["name"] not in args for s in sources):
            continue
        dim = int(node.get("attrs", {}).get("dim", 1))
        args[node["name"]] = mx.nd.concat(*[args[s["name"]] for s in sources], dim=dim)
        nodes[index] = {"op": "null", "name": node["name"], "inputs": []}
        graph["arg_nodes"] = sorted(graph["arg_nodes"] + [index])
    folded = mx.sym.load_json(json.dumps(graph))
    inputs = set(folded.list_inputs())
    return folded, {name: value for name, value in args.items() if name in inputs}


def fuse(sym, args):
    """oneDNN's fused fp32 graph of a plain symbol, and the args it uses (constant concats
    folded first, so that the fused convolutions read constant weights)."""
    sym, args = fold_constant_concats(sym, args)
    return sym.get_backend_symbol("MKLDNN"), args


def ops(sym):
    """The operator names of a symbol's nodes (those of fused subgraphs' insides not included)."""
    return [n["op"] for n in json.loads(sym.tojson())["nodes"] if n["op"] != "null"]


def graph_kind(sym):
    """'int8' (quantized operators), 'fp32-fused' (oneDNN subgraph operators) or 'fp32'."""
    nodes = [n for n in json.loads(sym.tojson())["nodes"] if n["op"] != "null"]
    if any(n["op"] in _QUANTIZE_OPS or n.get("attrs", {}).get("quantized") == "true" for n in nodes):
        return "int8"
    if any(n["op"].startswith("_sg_mkldnn") for n in nodes):
        return "fp32-fused"
    return "fp32"


def symbol_block(sym, args, aux, ctx=None):
    """A hybridized SymbolBlock running `sym` with the given arrays (INT8 ones keep their
    dtype), input `data`."""
    ctx = ctx or mx.cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = mx.gluon.SymbolBlock(sym, [mx.sym.var("data")])
    arrays = dict(args, **aux)
    for name, param in net.collect_params().items():
        param._load_init(arrays[name], ctx, cast_dtype=True, dtype_source="saved")
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def is_cpu(ctx):
    contexts = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    return all(c.device_type == "cpu" for c in contexts)


def inference_graph(loaded, ctx=None, fused=True):
    """(network, kind) that eval and predict run for a LoadedModel in float32: its oneDNN-fused
    graph on a CPU when `fused` (same outputs within float error, faster), else the network as
    loaded; an exported fused or INT8 graph runs as it is."""
    kind = loaded.graph or "gluon"
    if kind in ("fp32-fused", "int8") or not fused or not is_cpu(ctx or mx.cpu()):
        return loaded.net, kind
    sym, args, aux = trace(loaded.net)
    sym, args = fuse(sym, args)
    first = (ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()])[0]
    return symbol_block(sym, args, aux, first), "fp32-fused"


def describe_graph(kind, loaded):
    """One line saying which graph runs (`kind` as inference_graph or eval return it, e.g.
    'fp32-fused' or 'gluon in bfloat16') and where it came from."""
    base, _, dtype = kind.partition(" in ")
    text = GRAPH_KINDS.get(base, base) + (f", cast to {dtype}" if dtype else "")
    info = (loaded.meta or {}).get("int8") if base == "int8" else None
    if info:
        images, source = info.get("calib_images"), info.get("calib_source")
        text += f"; calibrated ({info.get('calib_mode')}) on {images} images of {source}"
    if loaded.graph in (None, "gluon"):
        origin = "Gluon params" if base == "gluon" else "built at load from Gluon params"
    else:
        origin = "export" if loaded.graph == base else "built at load from the export"
    return f"{base} ({text}), {origin} {loaded.source}"
