"""--pretrained-2d and --pretrained: a training run's network started from a checkpoint's
weights (a2gluon.models.inflate does the matching); the file side here: which network the
checkpoint holds (its meta JSON, else the name it should have), Gluon or exported params."""

import os

import mxnet as mx

from ..errors import error_line
from ..models import get_model, model_spec
from ..models.inflate import own_arrays, transfer
from . import checkpoint
from .settings import TrainError


def image_model_for(video_model):
    """The image network a video network inflates from by name: a2_resnet50_3d -> a2_resnet50."""
    name = video_model[: -len("_3d")] if video_model.endswith("_3d") else None
    try:
        if name and not model_spec(name).is_video:
            return name
    except ValueError:
        pass
    return None


def checkpoint_arrays(path, flag, default_model):
    """({name under the model's prefix: NDArray}, model name) of the checkpoint `path`: Gluon
    params (training's save_parameters; the network is rebuilt from the meta JSON beside it, else
    `default_model`) or exported params ('arg:'/'aux:' names).  TrainError (one line) otherwise."""
    if not os.path.isfile(path):
        raise TrainError(f"{flag} {path} does not exist; give a .params file written by training or export")
    try:
        saved = mx.nd.load(path)
        meta = checkpoint.read_meta(path) or {}
    except (mx.base.MXNetError, checkpoint.CheckpointError) as err:
        raise TrainError(f"{flag} {path} does not load ({error_line(err)})") from None
    if not isinstance(saved, dict) or not saved:
        raise TrainError(
            f"{flag} {path} holds no named parameters; give a .params file of training or export"
        )
    model = meta.get("model") or default_model
    if all(k.startswith(("arg:", "aux:")) for k in saved):  # exported: names carry the model prefix
        names = {k[4:]: v for k, v in saved.items()}
        stem_names = [n for n in names if n.endswith("conv1_weight") and "unit" not in n]
        prefix = min(stem_names, key=len)[: -len("conv1_weight")] if stem_names else ""
        return {n[len(prefix) :] if n.startswith(prefix) else n: v for n, v in names.items()}, model
    if model is None:
        raise TrainError(
            f"{flag} {path}: no meta JSON beside it names its network and none follows from --model; "
            "give the checkpoint's .json too (training writes it)"
        )
    classes = meta.get("num_classes") or (
        saved["output.weight"].shape[0] if "output.weight" in saved else 1000
    )
    try:
        net = get_model(model, classes=classes, **(meta.get("model_kwargs") or {}))
        net.load_parameters(path, ctx=mx.cpu())
    except (ValueError, TypeError, AssertionError, mx.base.MXNetError) as err:
        raise TrainError(
            f"{flag} {path} does not fit {model} ({error_line(err)[:200]}); give a checkpoint of {model}"
        ) from None
    return own_arrays(net), model


def start_from(net, settings, log):
    """Set `net` (initialised, before its first forward pass) from --pretrained-2d (inflated) or
    --pretrained (same architecture, any class count), logging what matched and what did not."""
    if settings.pretrained_2d:
        flag, path = "--pretrained-2d", settings.pretrained_2d
        if not model_spec(settings.model).is_video:
            raise TrainError(
                f"--pretrained-2d inflates into a video network; {settings.model} is an image network"
            )
        arrays, source_model = checkpoint_arrays(path, flag, image_model_for(settings.model))
        if source_model and model_spec(source_model).is_video:
            raise TrainError(
                f"--pretrained-2d {path} holds the video network {source_model}; use --pretrained for it"
            )
    elif settings.pretrained:
        flag, path = "--pretrained", settings.pretrained
        arrays, source_model = checkpoint_arrays(path, flag, settings.model)
    else:
        return None
    classifier = []
    if flag == "--pretrained-2d":  # an image network's classes are not the video data's
        classifier = sorted(k for k in arrays if k.startswith("dense"))
        arrays = {k: v for k, v in arrays.items() if k not in classifier}
    report = transfer(net, arrays, mode=settings.inflate)
    report.new = [n for n in report.new if n not in classifier]
    if report.loaded == 0:
        raise TrainError(
            f"{flag} {path}: none of its parameters fits {settings.model}; give a checkpoint of "
            + ("its image network" if flag == "--pretrained-2d" else "the same network")
        )
    what = f"{os.path.basename(path)} ({source_model or 'exported'})"
    reset = report.classifier_reset()
    for line in report.lines(what):
        if reset and "of another shape" in line:
            line = (
                f"classifier re-initialised for {reset[1]} classes ({os.path.basename(path)} has {reset[0]})"
            )
        log.info("%s: %s", flag, line)
    if classifier:
        log.info("%s: classifier (%s) initialised as usual", flag, ", ".join(classifier))
    return report
