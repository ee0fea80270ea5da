"""Parameter and multiply-add counting from a network's symbol graph (the paper's #Params and
FLOPs, where FLOPs are multiply-adds).  CLI: python -m a2gluon.profile MODEL [--json]."""

import argparse
import json
import sys
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


def default_input_shape(name):
    """The paper's input for a model: 8x224x224 clips for the video ResNet-50s, 16x112x112 for
    the other video models, 224x224 images otherwise."""
    if name.endswith("_3d"):
        return (3, 8, 224, 224) if "resnet50" in name else (3, 16, 112, 112)
    return (3, 224, 224)


def profile_model(name, input_shape=None, classes=1000, **kwargs):
    """Build registry model `name` and profile it at `input_shape` (its paper input by default)."""
    from .models import get_model

    net = get_model(name, classes=classes, **kwargs)
    return profile_block(net, tuple(input_shape or default_input_shape(name)), name=name)


def format_table(profile):
    rows = [f"{'layer':<48} {'op':<16} {'output':<22} {'params':>12} {'MACs':>16}"]
    for layer in profile.layers:
        rows.append(
            f"{layer.name:<48} {layer.op:<16} {'x'.join(map(str, layer.output_shape)):<22} "
            f"{layer.params:>12,} {layer.macs:>16,}"
        )
    return "\n".join(rows)


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) not in (3, 4) or min(shape) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an input shape: give C,H,W (3,224,224) or C,T,H,W (3,16,112,112)"
        )
    return shape


def main(argv=None):
    from .models import list_models

    parser = argparse.ArgumentParser(
        prog="python -m a2gluon.profile",
        description="Count a model's trainable parameters and multiply-adds (batch 1).",
    )
    parser.add_argument("model", help="a model name (see --list)", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the model names and exit")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument(
        "--input-shape",
        type=_shape,
        default=None,
        help="C,H,W or C,T,H,W without the batch axis (default: the model's paper input)",
    )
    parser.add_argument("--attention", choices=["a2", "nonlocal", "none"], default=None)
    parser.add_argument("--blocks", default=None, help="where: convS:U[,convS:U...] (1-based unit)")
    parser.add_argument("--reduction", type=int, default=None)
    parser.add_argument("--per-layer", action="store_true", help="also print (or include) each layer")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(list_models()))
        return 0
    if not args.model:
        parser.error("give a model name (python -m a2gluon.profile --list shows them)")
    kwargs = {}
    if args.attention is not None:
        kwargs["attention"] = None if args.attention == "none" else args.attention
    if args.blocks is not None:
        kwargs["blocks"] = args.blocks
    if args.reduction is not None:
        kwargs["reduction"] = args.reduction
    try:
        prof = profile_model(args.model, args.input_shape, classes=args.classes, **kwargs)
    except (ValueError, mx.base.MXNetError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(prof.to_json(per_layer=args.per_layer)))
        return 0
    if args.per_layer:
        print(format_table(prof))
    shape = "x".join(map(str, prof.input_shape))
    print(
        f"{prof.model} @ {shape}: {prof.params / 1e6:.2f} M parameters, {prof.macs / 1e9:.3f} G multiply-adds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
