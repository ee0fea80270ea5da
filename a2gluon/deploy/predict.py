"""Classify images with a loaded model (Gluon or exported): evaluation preprocessing, the
inference graph (oneDNN-fused fp32 on a CPU, or an exported fused / INT8 graph as it is),
softmax, top-k class names with probabilities."""

import mxnet as mx
import numpy as np

from ..models import model_spec
from .export import ExportError, check_input_shape
from .graph import inference_graph
from .loading import ModelLoadError
from .preprocess import load_batch


def is_video_model(loaded):
    """True when `loaded` takes clips (C x T x H x W) rather than images."""
    if loaded.input_shape is not None:
        return len(loaded.input_shape) == 4
    return loaded.model is not None and model_spec(loaded.model).is_video


def class_name(classes, index):
    return classes[index] if classes is not None else f"class {index}"


def predict_images(loaded, paths, input_size=None, topk=5, batch_size=8, ctx=None, fused=True):
    """[{'image': path, 'predictions': [{'index', 'class', 'probability'}, ...]}, ...] with the
    `topk` most probable classes of each image, most probable first.  `fused`: run oneDNN's
    fused fp32 graph on a CPU (deploy.graph.inference_graph) rather than the model as loaded."""
    if is_video_model(loaded):
        raise ModelLoadError(
            f"{loaded.model or loaded.source} is a video model (input C x T x H x W); predict "
            "classifies single images: use an image model"
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
        if loaded.classes is not None and probs.shape[1] != len(loaded.classes):
            raise ModelLoadError(
                f"the class list has {len(loaded.classes)} names but the model has "
                f"{probs.shape[1]} outputs; pass the class list it was trained with"
            )
        k = min(topk, probs.shape[1])
        for path, p in zip(chunk, probs):
            order = np.argsort(-p, kind="stable")[:k]
            results.append(
                {
                    "image": path,
                    "predictions": [
                        {
                            "index": int(i),
                            "class": class_name(loaded.classes, int(i)),
                            "probability": float(p[i]),
                        }
                        for i in order
                    ],
                }
            )
    return results


def format_predictions(results):
    """Plain-text report: each image's path, then one 'probability  class' line per class."""
    lines = []
    for item in results:
        lines.append(item["image"])
        lines += [f"  {p['probability']:.4f}  {p['class']}" for p in item["predictions"]]
    return "\n".join(lines)
