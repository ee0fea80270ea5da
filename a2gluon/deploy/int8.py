"""Calibrated INT8 graphs for CPUs: which CPUs run them, the calibration images, and MXNet's
oneDNN quantization (`mxnet.contrib.quantization.quantize_model_mkldnn`, the symbol-level form
of `quantize_net`).

What the INT8 graph holds, by measurement (benchmarks/NOTES.md, "INT8"): every convolution and
the pooling in INT8; the attention's batched products and softmax in fp32 (MXNet 1.9.1 has no
INT8 kernels for them); the classifier in fp32 (DEFAULT_FP32: as accurate, and faster at batch 1
than its quantize-multiply-dequantize); and the residual sums whose summand and output differ in
sign taken out of their convolutions (unfuse_mixed_sign_sums), because MXNet 1.9.1's fused INT8
sum clips such summands.  Keeping the first convolution or the A^2 blocks' convolutions in fp32
as well (FP32_CHOICES, `keep_fp32=`, `--int8-fp32`) measured slower at no gain in agreement with
the fp32 model on held-out images."""

import os
from dataclasses import dataclass

import mxnet as mx
import numpy as np

CALIB_MODES = ("naive", "entropy")
DEFAULT_CALIB_IMAGES = 512
CALIB_BATCH = 32

# oneDNN's instruction-set levels (DNNL_MAX_CPU_ISA names), lowest first.
ISA_LEVELS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_AMX",
)
# What INT8 needs: oneDNN's INT8 kernels, from SSE4.1 (oneDNN's floor) up.  Measured
# (benchmarks/NOTES.md, "INT8 and the CPU's instructions", DNNL_MAX_CPU_ISA emulating each level):
# the INT8 graph is faster than the fused fp32 one and as accurate at every level; VNNI (AVX-512
# VNNI, Cascade Lake / Zen 4 on) only makes it more so.
INT8_MIN_ISA = "SSE41"


class Int8Error(ValueError):
    """INT8 is not possible as asked (CPU, calibration data); the message says why and what to do."""


# --- the CPU ------------------------------------------------------------------------------------


def cpu_flags(path="/proc/cpuinfo"):
    """The instruction-set flags of the first CPU in `path`, or None when they cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_isa(flags):
    """The highest oneDNN ISA level (ISA_LEVELS) an x86 CPU with these flags runs at, or None
    below SSE4.1, oneDNN's floor."""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        if "avx512_vnni" in flags:
            return "AVX512_CORE_BF16" if "avx512_bf16" in flags else "AVX512_CORE_VNNI"
        return "AVX512_CORE"
    for flag, level in (("avx2", "AVX2"), ("avx", "AVX"), ("sse4_1", "SSE41")):
        if flag in flags:
            return level
    return None


def effective_isa(flags=None, environ=None):
    """The ISA level oneDNN runs at: the CPU's (from /proc/cpuinfo unless `flags` are given),
    capped by DNNL_MAX_CPU_ISA / MKLDNN_MAX_CPU_ISA when set (oneDNN honours them, which also
    emulates an older CPU).  None below SSE4.1; 'unknown' when the flags cannot be read (not
    Linux, not x86)."""
    flags = cpu_flags() if flags is None else flags
    environ = os.environ if environ is None else environ
    if flags is None:
        return "unknown"
    level = cpu_isa(flags)
    cap = (environ.get("DNNL_MAX_CPU_ISA") or environ.get("MKLDNN_MAX_CPU_ISA") or "").upper()
    if level is not None and cap in ISA_LEVELS and ISA_LEVELS.index(cap) < ISA_LEVELS.index(level):
        level = cap
    return level


def int8_cpu_problem(flags=None, environ=None):
    """Why INT8 cannot run on this CPU (one sentence), or None: an x86 CPU below SSE4.1 has none
    of oneDNN's kernels.  A CPU whose flags cannot be read is given the benefit of the doubt."""
    level = effective_isa(flags, environ)
    if level == "unknown" or (
        level is not None and ISA_LEVELS.index(level) >= ISA_LEVELS.index(INT8_MIN_ISA)
    ):
        return None
    return (
        "INT8 inference needs oneDNN's INT8 kernels, which need SSE4.1 at least (AVX-512 VNNI for the "
        "full speed), and this CPU has no SSE4.1; run the fp32 export on it"
    )


def require_int8_cpu(error=Int8Error):
    """Raise `error` with the one-line reason when this CPU should not run INT8."""
    problem = int8_cpu_problem()
    if problem is not None:
        raise error(problem)


# --- calibration images -------------------------------------------------------------------------


def _sample(count, wanted, seed):
    """Indices of `wanted` of `count` items (all when fewer), a seeded sample in file order."""
    if wanted >= count:
        return list(range(count))
    return sorted(np.random.RandomState(seed).choice(count, wanted, replace=False).tolist())


def _folder_images(folder):
    """Image files under `folder` (any depth, class folders or not), sorted; hidden ones skipped."""
    from ..data.layout import IMAGE_EXTENSIONS

    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(dirpath, name))
    return found


@dataclass
class CalibrationSet:
    """The images INT8 calibration runs on, preprocessed as evaluation preprocesses them."""

    source: str  # the .rec or folder
    data: object  # N x 3 x S x S float32 NDArray
    available: int  # images in the source

    @property
    def count(self):
        return self.data.shape[0]


def _check_size(image, input_size, where):
    height, width = image.shape[:2]
    if min(height, width) < input_size:
        raise Int8Error(
            f"calibration image {where} is {width}x{height}, smaller than the model's "
            f"{input_size}x{input_size} input: calibrating on upscaled images sets wrong ranges; "
            f"give calibration images of at least {input_size} pixels (e.g. the training set packed "
            f"at its training size), or export with the --input-size the model was trained at"
        )


def calibration_set(rec=None, idx=None, folder=None, num_images=DEFAULT_CALIB_IMAGES, input_size=224,
                    crop_ratio=0.875, seed=0):  # fmt: skip
    """`num_images` images (a seeded sample spread over the whole set; all of them when it holds
    fewer) from a .rec/.idx pair or a folder of images, through the evaluation transform (the
    tensor eval and predict see).  Int8Error (one line) for missing data or images smaller than
    the input, DataError for damaged records."""
    from ..data import check_records, eval_transform, refuse_known_bad_records

    transform = eval_transform(input_size, crop_ratio)
    tensors = []
    if rec or idx:
        if not (rec and idx):
            raise Int8Error("--calib-rec and --calib-idx go together: give the .rec and its .idx")
        info = check_records(rec, idx)
        refuse_known_bad_records(rec, idx)
        from ..data.pipeline import read_index

        keys, _ = read_index(idx)
        reader = mx.recordio.MXIndexedRecordIO(os.fspath(idx), os.fspath(rec), "r")
        try:
            for i in _sample(info.num_images, num_images, seed):
                key = int(keys[i])
                _, payload = mx.recordio.unpack(reader.read_idx(key))
                image = mx.image.imdecode(payload, flag=1, to_rgb=True)
                _check_size(image, input_size, f"{key} of {rec}")
                tensors.append(transform(image))
        finally:
            reader.close()
        source, available = os.fspath(rec), info.num_images
    elif folder:
        from .preprocess import read_image

        if not os.path.isdir(folder):
            raise Int8Error(f"calibration folder {folder} does not exist; give a folder of images")
        paths = _folder_images(folder)
        if not paths:
            raise Int8Error(
                f"{folder} holds no images (.jpg, .jpeg, .png); give a folder of calibration images"
            )
        for i in _sample(len(paths), num_images, seed):
            image = read_image(paths[i])
            _check_size(image, input_size, paths[i])
            tensors.append(transform(image))
        source, available = os.fspath(folder), len(paths)
    else:
        raise Int8Error(
            "INT8 needs calibration images: give --calib-rec REC --calib-idx IDX (e.g. the training "
            "records) or --calib-dir FOLDER"
        )
    return CalibrationSet(source, mx.nd.stack(*tensors), available)


# --- quantization -------------------------------------------------------------------------------


def _inner_ops(node):
    """(op, name) of the operators inside a fused subgraph node, or of the node itself."""
    inner = [(n["op"], n["name"]) for g in node.get("subgraphs", []) for n in g["nodes"] if n["op"] != "null"]
    return inner or [(node["op"], node["name"])]


def _first_layer(node, nodes):
    return any(nodes[e[0]]["op"] == "null" and nodes[e[0]]["name"] == "data" for e in node["inputs"])


def _unsigned(node):
    """Whether a node's output is non-negative (it ends in a ReLU), so that INT8 holds it as uint8."""
    attrs = node.get("attrs", {})
    return (
        attrs.get("with_act") == "true"
        or attrs.get("with_postsum_act") == "true"
        or node["op"] == "Activation"
    )


def _mixed_sign_sum(node, nodes):
    """A convolution fused with a residual sum whose summand and output differ in sign: a signed
    summand (a projection shortcut: 1x1 convolution + BatchNorm; an A^2 block's output) into a
    sum ending in ReLU (uint8 output), or an unsigned one (a unit's ReLU output) into a sum
    without ReLU (int8 output: the A^2 block's x + norm(extend(z)))."""
    attrs = node.get("attrs", {})
    if node["op"] != "_sg_mkldnn_conv" or attrs.get("with_sum") != "true":
        return False
    summand = nodes[node["inputs"][-1][0]]
    return summand["op"] != "null" and _unsigned(summand) != (attrs.get("with_postsum_act") == "true")


# name -> test(node, nodes) on the nodes of the graph partitioned for quantization
FP32_CHOICES = {
    "first-conv": lambda node, nodes: "conv" in node["op"].lower() and _first_layer(node, nodes),
    "classifier": lambda node, nodes: (
        any(op.endswith("FullyConnected") for op, _ in _inner_ops(node))
        or node["op"] == "_sg_mkldnn_fully_connected"
    ),
    "attention-projections": lambda node, nodes: any(
        name.endswith(("proj", "phi_fwd", "theta_fwd", "rho_fwd")) for _, name in _inner_ops(node)
    ),
    "attention-extension": lambda node, nodes: any(
        name.endswith("extend_fwd") for _, name in _inner_ops(node)
    ),
}
DEFAULT_FP32 = ("classifier",)
GRANULARITY = "tensor-wise"


def excluded_layers(partitioned, keep_fp32):
    """Names of the nodes of `partitioned` (a graph partitioned for quantization, MKLDNN_QUANTIZE)
    that the `keep_fp32` choices (names of FP32_CHOICES) keep in fp32."""
    import json

    unknown = sorted(set(keep_fp32) - set(FP32_CHOICES))
    if unknown:
        raise Int8Error(
            f"unknown layer kind {unknown[0]!r} to keep in fp32; choose from {', '.join(FP32_CHOICES)}"
        )
    nodes = json.loads(partitioned.tojson())["nodes"]
    return [
        n["name"] for n in nodes if n["op"] != "null" and any(FP32_CHOICES[c](n, nodes) for c in keep_fp32)
    ]


def _conv_part(node):
    """The fused node `node` (convolution [+ BatchNorm] + sum + ReLU) without its sum and ReLU:
    (the convolution node, its inner add node, its inner ReLU node)."""
    inner = node["subgraphs"][0]
    nodes = inner["nodes"]
    add = next(i for i, n in enumerate(nodes) if n["op"] == "elemwise_add")
    act = next((i for i, n in enumerate(nodes) if n["op"] == "Activation" and i > add), None)
    conv_out = next(e[0] for e in nodes[add]["inputs"] if nodes[e[0]]["op"] != "null")
    summand = next(e[0] for e in nodes[add]["inputs"] if nodes[e[0]]["op"] == "null")
    keep = [i for i in range(len(nodes)) if i not in (add, act, summand)]
    index = {old: new for new, old in enumerate(keep)}
    body = []
    for old in keep:
        copy = dict(nodes[old], inputs=[[index[e[0]], e[1], e[2]] for e in nodes[old]["inputs"]])
        body.append(copy)
    sub = {
        "nodes": body,
        "arg_nodes": [index[i] for i in inner["arg_nodes"] if i in index],
        "heads": [[index[conv_out], 0, 0]],
        "attrs": inner.get("attrs", {}),
    }
    attrs = {k: v for k, v in node["attrs"].items() if k not in ("with_sum", "with_postsum_act")}
    conv = {"op": node["op"], "name": f"{node['name']}_conv", "attrs": attrs, "inputs": node["inputs"][:-1]}
    conv["subgraphs"] = [sub]
    return conv, nodes[add], nodes[act] if act is not None else None


def unfuse_mixed_sign_sums(partitioned):
    """`partitioned` (MKLDNN_QUANTIZE) with every convolution fused with a residual sum whose
    summand and output differ in sign (_mixed_sign_sum) split into the convolution
    (+ BatchNorm), an elemwise_add and its ReLU, each of which quantizes to INT8 on its own.
    MXNet 1.9.1's fused INT8 convolution adds the summand in the output buffer after reordering
    it to the output's type: a signed summand into a uint8 output loses its negative values, an
    unsigned one into an int8 output its values above 127 (benchmarks/NOTES.md, "INT8")."""
    import json

    graph = json.loads(partitioned.tojson())
    nodes, out, where = graph["nodes"], [], {}
    for old, node in enumerate(nodes):
        inputs = [[where[e[0]], e[1], e[2]] for e in node["inputs"]]
        if _mixed_sign_sum(node, nodes):
            conv, add, act = _conv_part(node)
            out.append(dict(conv, inputs=inputs[:-1]))
            out.append(
                {"op": "elemwise_add", "name": add["name"], "inputs": [[len(out) - 1, 0, 0], inputs[-1]]}
            )
            if act is not None:
                relu = {"op": "Activation", "name": act["name"], "attrs": act["attrs"]}
                out.append(dict(relu, inputs=[[len(out) - 1, 0, 0]]))
        else:
            out.append(dict(node, inputs=inputs))
        where[old] = len(out) - 1
    graph = {
        "nodes": out,
        "arg_nodes": [i for i, n in enumerate(out) if n["op"] == "null"],
        "heads": [[where[e[0]], e[1], e[2]] for e in graph["heads"]],
        "attrs": graph.get("attrs", {}),
    }
    return mx.sym.load_json(json.dumps(graph))


@dataclass
class Int8Graph:
    """A quantized graph and how it was made."""

    sym: object
    args: dict
    aux: dict
    calibration: dict  # mode, images, source, fp32 layers: what the meta JSON records


def quantize(
    sym, args, aux, calib, calib_mode="naive", keep_fp32=DEFAULT_FP32, ctx=None, granularity=GRANULARITY
):
    """The calibrated INT8 graph of a plain fp32 symbol (its args and aux) on the CalibrationSet
    `calib`: thresholds from the layer outputs' min/max ('naive') or by KL divergence
    ('entropy'), quantized_dtype 'auto' (uint8 after ReLU, int8 elsewhere), weights quantized
    once, oneDNN fusion before and after.  Int8Error for a CPU without INT8 support."""
    from mxnet.contrib.quantization import quantize_model_mkldnn

    from .graph import fold_constant_concats

    require_int8_cpu()
    if calib_mode not in CALIB_MODES:
        raise Int8Error(f"calibration mode must be one of {', '.join(CALIB_MODES)}, got {calib_mode!r}")
    sym, args = fold_constant_concats(sym, args)
    sym = unfuse_mixed_sign_sums(sym.get_backend_symbol("MKLDNN_QUANTIZE"))
    excluded = excluded_layers(sym, keep_fp32)
    batch = min(CALIB_BATCH, calib.count)
    usable = calib.count - calib.count % batch  # Module binds one batch size; no padded rows
    data = mx.io.NDArrayIter(calib.data[:usable], batch_size=batch, data_name="data")
    qsym, qargs, qaux = quantize_model_mkldnn(
        sym,
        args,
        aux,
        data_names=("data",),
        label_names=None,
        ctx=ctx or mx.cpu(),
        excluded_sym_names=excluded,
        calib_mode=calib_mode,
        calib_data=data,
        num_calib_examples=usable,
        quantized_dtype="auto",
        quantize_mode="full",
        quantize_granularity=granularity,
    )
    info = {
        "calib_mode": calib_mode,
        "calib_images": usable,
        "calib_source": calib.source,
        "calib_available": calib.available,
        "fp32_layers": sorted(keep_fp32),
    }
    return Int8Graph(qsym, qargs, qaux, info)


@dataclass
class Int8Options:
    """What an INT8 export is made from (export_model's `int8=`)."""

    calibration: CalibrationSet
    mode: str = "naive"  # one of CALIB_MODES
    keep_fp32: tuple = DEFAULT_FP32  # names of FP32_CHOICES
    onnx: bool = False  # with ONNX export: also PREFIX-int8.onnx (onnxruntime static quantization)
    check_images: int = 64  # calibration images the INT8 graph's top-1 is compared on


def top1(net, data, batch=CALIB_BATCH):
    """The top-1 class of every row of `data` under `net`, as a numpy array."""
    out = [net(data[i : i + batch]).argmax(axis=1).asnumpy() for i in range(0, data.shape[0], batch)]
    return np.concatenate(out).astype(np.int64)


def agreement(net, graph, data):
    """How often the Int8Graph `graph` picks the fp32 network `net`'s top-1 class on `data`:
    {'images': n, 'top1': fraction}."""
    from .graph import symbol_block

    if data.shape[0] == 0:
        return {"images": 0, "top1": None}
    same = top1(net, data) == top1(symbol_block(graph.sym, graph.args, graph.aux), data)
    return {"images": int(same.size), "top1": float(same.mean())}
