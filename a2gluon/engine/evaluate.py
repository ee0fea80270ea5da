"""Scoring a network on a validation set: top-1/top-5 over every image exactly once, split
across devices, with images/s."""

import time

import mxnet as mx
from mxnet import gluon

from .metrics import TopK


def batches(source):
    """(data, label, pad) from an mx.io.DataIter (its `pad` marks the padded tail of the last
    batch) or from a Gluon DataLoader of (data, label) pairs (never padded)."""
    if isinstance(source, mx.io.DataIter):
        source.reset()
        for batch in source:
            yield batch.data[0], batch.label[0], batch.pad or 0
    else:
        for data, label in source:
            yield data, label, 0


def forward(net, data, ctx):
    """The network's float32 outputs for `data`, split over the contexts `ctx`."""
    parts = gluon.utils.split_and_load(data, ctx, even_split=False)
    return [net(x).astype("float32", copy=False) for x in parts]


def evaluate(net, source, ctx, num_classes=None, k=5, progress=None):
    """Top-1 / top-k of `net` over `source`; returns (TopK metric, images/s).  `progress`: a
    callable taking the number of images just done (e.g. a tqdm bar's update)."""
    metric = TopK(k=k, num_classes=num_classes)
    start = time.perf_counter()
    for data, label, pad in batches(source):
        outputs = mx.nd.concat(*forward(net, data, ctx), dim=0)
        metric.update(label, outputs, pad)
        if progress is not None:
            progress(data.shape[0] - pad)
    elapsed = time.perf_counter() - start
    return metric, metric.count / elapsed if elapsed > 0 else float("nan")
