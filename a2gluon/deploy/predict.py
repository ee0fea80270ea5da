"""Classify images with a loaded model (Gluon or exported): evaluation preprocessing, the
inference graph (oneDNN-fused fp32 on a CPU, or an exported fused / INT8 graph as it is),
softmax, top-k class names with probabilities."""

import sys

import mxnet as mx
import numpy as np

from ..models import model_spec
from .export import VIEW_SETTINGS, ExportError, check_input_shape
from .graph import inference_graph
from .loading import ModelLoadError
from .preprocess import load_batch


def is_video_model(loaded):
    """True when `loaded` takes clips (C x T x H x W) rather than images."""
    if loaded.input_shape is not None:
        return len(loaded.input_shape) == 4
    return loaded.model is not None and model_spec(loaded.model).is_video


# The test protocol without a checkpoint that records one (the Non-local / SlowFast papers').
NUM_CLIPS, NUM_CROPS = 10, 3


def video_protocol(loaded, **given):
    """{setting: value} of VIEW_SETTINGS for video model `loaded`: those `given` (not None), else
    what its checkpoint or export recorded (meta 'args'), else its input shape, a sampling stride
    of 1, the short side of the evaluation resize and 10 clips x 3 crops."""
    from ..data.pipeline import resize_size

    recorded = (loaded.meta or {}).get("args") or {}
    shape = loaded.input_shape or (model_spec(loaded.model).input_shape if loaded.model else None)
    fallback = {"new_step": 1, "num_clips": NUM_CLIPS, "num_crops": NUM_CROPS}
    if shape:
        fallback.update(new_length=shape[1], input_size=shape[-1])
    out = {}
    for name in VIEW_SETTINGS:
        value = given.get(name)
        if value is None:
            value = recorded.get(name, fallback.get(name))
        if value is None and name == "short_side" and out.get("input_size"):
            value = resize_size(out["input_size"], 0.875)
        if value is None:
            raise ModelLoadError(
                f"{loaded.source}: nothing records its --{name.replace('_', '-')}; give it (the "
                "model's training clip), e.g. --new-length 16 --input-size 112"
            )
        out[name] = int(value)
    if out["short_side"] < out["input_size"]:
        raise ModelLoadError(
            f"--short-side {out['short_side']} is smaller than --input-size {out['input_size']}"
        )
    try:
        check_input_shape(
            loaded.net, (3, out["new_length"], out["input_size"], out["input_size"]), loaded.model
        )
    except ExportError as err:
        raise ModelLoadError(str(err)) from None
    return out


def predict_videos(loaded, paths, topk=5, ctx=None, fused=True, batch_size=8, **given):
    """[{'video': path, 'views': V, 'predictions': [...]}] as predict_images gives them for
    images: the softmax of every test view of the video (video_protocol(loaded, **given):
    clips x crops) averaged, its `topk` classes, most probable first."""
    from ..data.video import _num_frames, clip_span, video_views

    ctx = ctx or mx.cpu()
    views = video_protocol(loaded, **given)
    frames = [_num_frames(path, None) for path in paths]  # every file readable before any work
    span = clip_span(views["new_length"], views["new_step"])
    for path, count in zip(paths, frames):
        if count < span:
            print(
                f"{path}: {count} frame(s), shorter than one clip ({span}); its frames are looped",
                file=sys.stderr,
            )
    net, _ = inference_graph(loaded, ctx, fused)
    results = []
    for path, count in zip(paths, frames):
        clips = video_views(path, **views, num_frames=count)
        probs = np.concatenate(
            [
                mx.nd.softmax(net(mx.nd.array(clips[i : i + batch_size], ctx=ctx)), axis=-1).asnumpy()
                for i in range(0, len(clips), batch_size)
            ]
        ).mean(axis=0)
        results.append(dict(video=path, views=len(clips), **_top(loaded, probs, topk)))
    return results


def _top(loaded, p, topk):
    """{'predictions': [{'index', 'class', 'probability'}, ...]}: the `topk` largest of p."""
    if loaded.classes is not None and len(p) != len(loaded.classes):
        raise ModelLoadError(
            f"the class list has {len(loaded.classes)} names but the model has {len(p)} outputs; "
            "pass the class list it was trained with"
        )
    order = np.argsort(-p, kind="stable")[: min(topk, len(p))]
    return {
        "predictions": [
            {"index": int(i), "class": class_name(loaded.classes, int(i)), "probability": float(p[i])}
            for i in order
        ]
    }


def class_name(classes, index):
    return classes[index] if classes is not None else f"class {index}"


def predict_images(loaded, paths, input_size=None, topk=5, batch_size=8, ctx=None, fused=True):
    """[{'image': path, 'predictions': [{'index', 'class', 'probability'}, ...]}, ...] with the
    `topk` most probable classes of each image, most probable first.  `fused`: run oneDNN's
    fused fp32 graph on a CPU (deploy.graph.inference_graph) rather than the model as loaded."""
    if is_video_model(loaded):
        raise ModelLoadError(
            f"{loaded.model or loaded.source} is a video model (input C x T x H x W); give it video "
            "files (predict_videos), not images"
        )
    from ..data.video import VIDEO_EXTENSIONS

    videos = [p for p in paths if str(p).lower().endswith(VIDEO_EXTENSIONS)]
    if videos:
        raise ModelLoadError(
            f"{videos[0]} is a video but {loaded.model or loaded.source} is an image model (input "
            "C x H x W); give images, or a video model (e.g. a2_resnet26_3d) for videos"
        )
    ctx = ctx or mx.cpu()
    input_size = input_size or loaded.input_size or 224
    try:
        check_input_shape(loaded.net, (3, input_size, input_size), loaded.model)
    except ExportError as err:
        raise ModelLoadError(str(err)) from None
    net, _ = inference_graph(loaded, ctx, fused)
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        batch = load_batch(chunk, input_size).as_in_context(ctx)
        logits = net(batch)
        probs = mx.nd.softmax(logits, axis=-1).asnumpy()
        for path, p in zip(chunk, probs):
            results.append(dict(image=path, **_top(loaded, p, topk)))
    return results


def format_predictions(results):
    """Plain-text report: each image's path, then one 'probability  class' line per class."""
    lines = []
    for item in results:
        lines.append(item["image"] if "image" in item else f"{item['video']} ({item['views']} views)")
        lines += [f"  {p['probability']:.4f}  {p['class']}" for p in item["predictions"]]
    return "\n".join(lines)
