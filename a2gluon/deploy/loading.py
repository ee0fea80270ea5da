"""Load trained or exported models for inference: Gluon params (+ the trainer's meta JSON),
exported PREFIX-symbol.json / PREFIX-EEEE.params, and class-name lists.  Every failure is a
ModelLoadError whose message is one line saying what is wrong and what to do."""

import os
import warnings
from dataclasses import dataclass, field

import mxnet as mx

from ..data.layout import DataError, read_class_list
from ..engine import checkpoint
from ..engine.checkpoint import CheckpointError, meta_path
from ..engine.ema import ema_path
from ..models import get_model
from .graph import graph_kind, is_cpu
from .int8 import require_int8_cpu


class ModelLoadError(ValueError):
    """A model, params file or class list cannot be loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A network ready for inference and what is known about it."""

    net: object  # a Gluon HybridBlock (or SymbolBlock for exported models)
    model: str = None  # registry name, when known
    model_kwargs: dict = field(default_factory=dict)
    num_classes: int = None
    classes: list = None  # class names in label order, when known
    input_size: int = None  # the spatial size the model was trained / exported at, when known
    input_shape: tuple = None  # C x H x W or C x T x H x W, when known
    source: str = None  # the file(s) it was loaded from
    graph: str = None  # 'gluon', or an exported symbol's kind: 'fp32', 'fp32-fused', 'int8' (deploy.graph)
    meta: dict = field(default_factory=dict)  # the export's or trainer's meta JSON, when there is one
    ema: bool = False  # the weights are the model's exponential moving average (--model-ema)


def canonical_prefix(model):
    """The Gluon name prefix used for every model built here (`{model}_`), so that parameter
    names in exported symbols, in symbols/ and in Module params do not depend on how many
    networks a process has built before."""
    return f"{model}_"


def build_model(model, classes=1000, **kwargs):
    """get_model(model, classes, **kwargs) with the canonical name prefix; ModelLoadError for an
    unknown model or bad options."""
    kwargs.setdefault("prefix", canonical_prefix(model))
    try:
        return get_model(model, classes=classes, **kwargs)
    except (ValueError, TypeError) as err:
        raise ModelLoadError(f"cannot build model {model!r}: {err}") from None


def read_meta(params):
    """The meta JSON beside `params` as a dict, or None when there is none."""
    try:
        return checkpoint.read_meta(params)
    except CheckpointError as err:
        raise ModelLoadError(f"{err}; fix or delete that file") from None


def read_class_names(path):
    """Class names in label order from a --classes file (see a2gluon.data.layout.read_class_list)."""
    try:
        return read_class_list(path)
    except DataError as err:
        raise ModelLoadError(str(err)) from None


def check_class_names(classes, num_classes, source):
    """Raise ModelLoadError when a class list does not have one name per model output."""
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise ModelLoadError(
            f"{source} lists {len(classes)} class names but the model has {num_classes} outputs; "
            "pass the class list the model was trained with"
        )


def read_params_file(path, what="params file"):
    """The name -> NDArray dict stored in an MXNet .params file."""
    if not os.path.isfile(path):
        hint = "" if path.endswith(".params") else " (a .params file)"
        raise ModelLoadError(f"{what} {path} does not exist; give the path of an existing file{hint}")
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError:
        raise ModelLoadError(
            f"{path} is not an MXNet params file (corrupt, truncated or another format); "
            "give a file written by training (save_parameters) or by export"
        ) from None
    if not isinstance(loaded, dict) or not loaded:
        raise ModelLoadError(
            f"{path} holds no named parameters; give a file written by training or by export"
        )
    return loaded


def _few(names, k=3):
    names = sorted(names)
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def _split_exported(loaded):
    """Strip the 'arg:'/'aux:' prefixes of exported params (None when the file is not exported)."""
    if not all(k.startswith(("arg:", "aux:")) for k in loaded):
        return None
    return {k[4:]: v for k, v in loaded.items()}


def _expected(net, exported):
    """name -> Parameter for the names the file should use."""
    if exported:
        return dict(net.collect_params().items())
    return net._collect_params_with_prefix()


def _class_count_in_file(expected, loaded, classes):
    """The class count the file was saved with when it differs from `classes` only in the
    classifier (the parameters whose first axis is the class count), else None."""
    wrong = [n for n in expected if n in loaded and not _same_shape(expected[n].shape, loaded[n].shape)]
    if not wrong:
        return None
    counts = set()
    for n in wrong:
        want, got = expected[n].shape, loaded[n].shape
        if want[0] != classes or len(want) != len(got) or not _same_shape(want[1:], got[1:]):
            return None
        counts.add(got[0])
    return counts.pop() if len(counts) == 1 else None


def _same_shape(want, got):
    return len(want) == len(got) and all(w in (0, g) for w, g in zip(want, got))


def ema_params(params):
    """The EMA weights saved beside checkpoint `params` (STEM-ema.params, written by training with
    --model-ema); ModelLoadError when there are none."""
    params = os.fspath(params)
    if params.endswith("-ema.params"):
        return params
    path = ema_path(params[: -len(".params")] if params.endswith(".params") else params)
    if not os.path.isfile(path):
        raise ModelLoadError(
            f"{params} has no EMA weights beside it ({path} does not exist): the run was trained "
            "without --model-ema; drop --ema to use the model's own weights"
        )
    return path


def load_gluon_model(model, params, num_classes=None, ctx=None, model_kwargs=None, ema=False):
    """Build registry model `model` (None: the one named in the meta JSON) and load `params`.

    The trainer's meta JSON beside the params file (same stem, `.json`) supplies the model's
    keyword options, class count and class names when present; `model_kwargs` (get_model
    options besides classes) update its options.  Without a class count from
    the caller or the meta, it is read off the params file.  Both Gluon params
    (save_parameters) and exported params ('arg:'/'aux:' names) load.
    `ema`: load the checkpoint's EMA weights (STEM-ema.params, described by STEM.json) instead.
    Returns a LoadedModel; raises ModelLoadError with a one-line message on any failure."""
    ctx = ctx or mx.cpu()
    params = ema_params(params) if ema else os.fspath(params)
    loaded = read_params_file(params)
    meta = read_meta(params) or {}
    meta_model = meta.get("model")
    if model is None:
        model = meta_model
        if model is None:
            raise ModelLoadError(f"no model name for {params}: pass --model NAME (the registry name)")
    elif meta_model and meta_model != model:
        raise ModelLoadError(
            f"{params} was trained as {meta_model!r} (says {meta_path(params)}) but {model!r} "
            f"was asked for; pass --model {meta_model}"
        )
    kwargs = dict(meta.get("model_kwargs") or {})
    kwargs.update(model_kwargs or {})
    classes_meta = meta.get("num_classes")
    explicit = num_classes is not None
    if explicit and classes_meta is not None and classes_meta != num_classes:
        raise ModelLoadError(
            f"{params} has {classes_meta} classes (says {meta_path(params)}) but {num_classes} "
            f"were asked for; drop --num-classes or pass --num-classes {classes_meta}"
        )
    classes = num_classes if explicit else (classes_meta or 1000)
    exported = _split_exported(loaded)
    if exported is not None:
        loaded = exported

    net = build_model(model, classes=classes, **kwargs)
    expected = _expected(net, exported is not None)
    missing = set(expected) - set(loaded)
    unexpected = set(loaded) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameters of {model} are missing ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} are not in {model} ({_few(unexpected)})")
        raise ModelLoadError(
            f"{params} holds the parameters of a different model: {'; '.join(parts)}; pass the "
            "--model (and options) it was trained with"
        )
    found = _class_count_in_file(expected, loaded, classes)
    if found is not None:
        if explicit:
            raise ModelLoadError(
                f"{params} was saved for {found} classes but the model was built for {classes}; "
                f"pass --num-classes {found}"
            )
        if classes_meta is not None:
            raise ModelLoadError(
                f"{params} was saved for {found} classes but {meta_path(params)} says "
                f"{classes_meta}: that description belongs to other params; fix or delete it"
            )
        classes = found
        net = build_model(model, classes=classes, **kwargs)
        expected = _expected(net, exported is not None)
    for name, param in expected.items():
        if not _same_shape(param.shape, loaded[name].shape):
            raise ModelLoadError(
                f"{params} does not fit {model}: parameter {name} has shape "
                f"{tuple(loaded[name].shape)} in the file but {param.shape} in the model; pass "
                "the model options it was trained with"
            )
    for name, param in expected.items():
        param._load_init(loaded[name], ctx)

    class_names = meta.get("classes")
    check_class_names(class_names, classes, meta_path(params))
    input_size = meta.get("input_size")
    return LoadedModel(
        net=net,
        model=model,
        model_kwargs=kwargs,
        num_classes=classes,
        classes=class_names,
        input_size=input_size,
        input_shape=tuple(meta["input_shape"]) if meta.get("input_shape") else None,
        source=params,
        graph="gluon",
        meta=meta,
        ema=ema or params.endswith("-ema.params"),
    )


def symbol_files(prefix, epoch=0):
    """(PREFIX-symbol.json, PREFIX-EEEE.params); a prefix given as either file name is accepted."""
    prefix = os.fspath(prefix)
    for tail in ("-symbol.json", f"-{epoch:04d}.params"):
        if prefix.endswith(tail):
            prefix = prefix[: -len(tail)]
    return prefix, f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


def load_symbol_model(prefix, epoch=0, ctx=None):
    """Load an exported model (PREFIX-symbol.json + PREFIX-EEEE.params) as a SymbolBlock, with
    the meta (PREFIX.json) and class list (PREFIX.classes.json) export writes beside them."""
    ctx = ctx or mx.cpu()
    prefix, sym_file, params_file = symbol_files(prefix, epoch)
    if not os.path.isfile(sym_file):
        raise ModelLoadError(
            f"{sym_file} does not exist: {prefix!r} is not an exported model prefix; export one "
            "with a2gluon export, or use --model NAME --params FILE for Gluon params"
        )
    try:
        sym = mx.sym.load(sym_file)
    except mx.base.MXNetError:
        raise ModelLoadError(
            f"{sym_file} is not an MXNet symbol file (corrupt or another format); export again"
        ) from None
    loaded = read_params_file(params_file, what="exported params file")
    if _split_exported(loaded) is None:
        raise ModelLoadError(
            f"{params_file} is not an exported params file (no 'arg:'/'aux:' names); for Gluon "
            "params use --model NAME --params FILE"
        )
    kind = graph_kind(sym)
    if kind == "int8":
        if not is_cpu(ctx):
            raise ModelLoadError(f"{sym_file} is an INT8 graph, which runs on CPUs only; load it on a CPU")
        require_int8_cpu(ModelLoadError)
    inputs = [n for n in sym.list_inputs() if f"arg:{n}" not in loaded and f"aux:{n}" not in loaded]
    if inputs != ["data"]:
        missing = [n for n in inputs if n != "data"]
        raise ModelLoadError(
            f"{params_file} does not match {sym_file}: "
            + (f"missing {_few(missing)}" if missing else f"inputs {inputs}")
            + "; export the model again"
        )
    try:
        with warnings.catch_warnings():  # "cannot decide type for data": it is float32
            warnings.simplefilter("ignore", UserWarning)
            net = mx.gluon.SymbolBlock.imports(sym_file, ["data"], params_file, ctx=ctx)
    except (mx.base.MXNetError, AssertionError, ValueError) as err:
        from ..errors import error_line

        raise ModelLoadError(f"cannot load {prefix}: {error_line(err)}; export the model again") from None
    meta = read_meta(prefix + ".params") or {}
    classes = meta.get("classes")
    classes_file = prefix + ".classes.json"
    if classes is None and os.path.isfile(classes_file):
        classes = read_class_names(classes_file)
    return LoadedModel(
        net=net,
        model=meta.get("model"),
        model_kwargs=dict(meta.get("model_kwargs") or {}),
        num_classes=meta.get("num_classes"),
        classes=classes,
        input_size=meta.get("input_size"),
        input_shape=tuple(meta["input_shape"]) if meta.get("input_shape") else None,
        source=prefix,
        graph=kind,
        meta=meta,
    )


def module_params(loaded):
    """(arg_params, aux_params) of a LoadedModel keyed by the symbol's names, for
    mx.mod.Module.set_params on a symbol from symbols/ (same canonical names) or the export."""
    net = loaded.net
    sym = net(mx.sym.var("data"))
    aux_names = set(sym.list_auxiliary_states())
    arg_names = set(sym.list_arguments())
    arg_params, aux_params = {}, {}
    for name, param in net.collect_params().items():
        if name in aux_names:
            aux_params[name] = param.data().copy()
        elif name in arg_names:
            arg_params[name] = param.data().copy()
    return arg_params, aux_params
