"""Parameter and multiply-add counting from a network's symbol graph (the paper's #Params and
FLOPs, where FLOPs are multiply-adds).  Command line: a2gluon profile MODEL [--json]."""

import json
from dataclasses import asdict, dataclass

import mxnet as mx
import numpy as np

# Operators whose multiply-adds are counted; everything else (BatchNorm, activations, softmax,
# pooling, element-wise sums) is taken as free, as the paper and Gluon-CV count.
COUNTED_OPS = ("Convolution", "FullyConnected", "batch_dot", "dot")


@dataclass
class Layer:
    name: str
    op: str
    output_shape: tuple
    params: int
    macs: int


@dataclass
class Profile:
    model: str
    input_shape: tuple
    params: int
    macs: int
    layers: list

    def to_json(self, per_layer=False):
        out = {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "params": self.params,
            "macs": self.macs,
            "params_m": round(self.params / 1e6, 3),
            "gmacs": round(self.macs / 1e9, 3),
        }
        if per_layer:
            out["layers"] = [
                dict(asdict(layer), output_shape=list(layer.output_shape)) for layer in self.layers
            ]
        return out


def _dot_macs(a_shape, out_shape, attrs):
    """Multiply-adds of (batch_)dot: every output element is a sum of K products."""
    transpose_a = attrs.get("transpose_a", "False") == "True"
    k = a_shape[-2] if transpose_a else a_shape[-1]
    return int(np.prod(out_shape)) * int(k)


def profile_symbol(sym, input_shape, name="model", trained_params=None):
    """Count the trainable parameters and multiply-adds of `sym` for a batch-1 `input_shape`
    (C x H x W or C x T x H x W).  `trained_params`: names of the trained parameters (default:
    every argument but the input; auxiliary states such as running means are not counted)."""
    data_shape = (1,) + tuple(input_shape)
    internals = sym.get_internals()
    arg_shapes, out_shapes, aux_shapes = internals.infer_shape(data=data_shape)
    if arg_shapes is None:
        raise ValueError(f"cannot infer the shapes of {name} for input {data_shape}")
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    shapes.update(zip(internals.list_arguments(), arg_shapes))
    shapes.update(zip(internals.list_auxiliary_states(), aux_shapes))

    graph = json.loads(sym.tojson())
    nodes = graph["nodes"]

    def entry_shape(entry):
        node = nodes[entry[0]]
        if node["op"] == "null":
            return shapes[node["name"]]
        key = node["name"] + "_output"
        return shapes[key if entry[1] == 0 and key in shapes else f"{key}{entry[1]}"]

    def param_size(node_id):
        node = nodes[node_id]
        if node["op"] != "null" or node["name"] == "data":
            return 0
        if trained_params is not None and node["name"] not in trained_params:
            return 0
        return int(np.prod(shapes[node["name"]]))

    layers = []
    seen_params = set()
    for node_id, node in enumerate(nodes):
        if node["op"] == "null":
            continue
        out_shape = entry_shape([node_id, 0])
        params = 0
        for entry in node["inputs"]:
            if nodes[entry[0]]["op"] == "null" and entry[0] not in seen_params:
                seen_params.add(entry[0])
                params += param_size(entry[0])
        macs = 0
        if node["op"] == "Convolution":  # each output element: C_in/groups x kernel products
            macs = int(np.prod(out_shape)) * int(np.prod(entry_shape(node["inputs"][1])[1:]))
        elif node["op"] == "FullyConnected":
            macs = int(np.prod(out_shape)) * int(entry_shape(node["inputs"][1])[1])
        elif node["op"] in ("batch_dot", "dot"):
            a_shape = entry_shape(node["inputs"][0])
            macs = _dot_macs(a_shape, out_shape, node.get("attrs", {}))
        if params or macs:
            layers.append(Layer(node["name"], node["op"], tuple(out_shape), params, macs))
    total_params = sum(param_size(i) for i, n in enumerate(nodes) if n["op"] == "null")
    return Profile(name, tuple(input_shape), total_params, sum(layer.macs for layer in layers), layers)


def profile_block(net, input_shape, name="model"):
    """Profile a Gluon HybridBlock (its parameters need not be initialised)."""
    sym = net(mx.sym.var("data"))
    if isinstance(sym, (list, tuple)):
        sym = mx.sym.Group(list(sym))
    trained = {p.name for p in net.collect_params().values() if p.grad_req != "null"}
    return profile_symbol(sym, input_shape, name=name, trained_params=trained)


def profile_model(name, input_shape=None, classes=1000, **kwargs):
    """Build registry model `name` and profile it at `input_shape` (its paper input by default)."""
    from .models import get_model, model_spec

    net = get_model(name, classes=classes, **kwargs)
    return profile_block(net, tuple(input_shape or model_spec(name).input_shape), name=name)


def format_table(profile):
    rows = [f"{'layer':<48} {'op':<16} {'output':<22} {'params':>12} {'MACs':>16}"]
    for layer in profile.layers:
        rows.append(
            f"{layer.name:<48} {layer.op:<16} {'x'.join(map(str, layer.output_shape)):<22} "
            f"{layer.params:>12,} {layer.macs:>16,}"
        )
    return "\n".join(rows)
