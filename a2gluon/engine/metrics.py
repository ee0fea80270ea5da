"""Accuracy counting (top-1/top-5 with padded batches dropped), the JSON-lines metrics file and
the training-curves plot."""

import json
import os

import numpy as np


class TopK:
    """Running top-1 / top-k accuracy and (optionally) per-class counts over hard labels."""

    def __init__(self, k=5, num_classes=None):
        self.k = k
        self.num_classes = num_classes
        self.reset()

    def reset(self):
        self.count = 0
        self.top1 = 0
        self.topk = 0
        if self.num_classes:
            self.class_total = np.zeros(self.num_classes, dtype=np.int64)
            self.class_top1 = np.zeros(self.num_classes, dtype=np.int64)
            self.class_topk = np.zeros(self.num_classes, dtype=np.int64)

    def update(self, labels, outputs, pad=0):
        """labels: (N,) hard labels; outputs: (N, C) scores (NDArray or numpy); the last `pad`
        rows are padding and are ignored."""
        scores = outputs.asnumpy() if hasattr(outputs, "asnumpy") else np.asarray(outputs)
        labels = labels.asnumpy() if hasattr(labels, "asnumpy") else np.asarray(labels)
        scores = scores.astype(np.float32)
        labels = labels.astype(np.int64).reshape(-1)
        if pad:
            scores, labels = scores[:-pad], labels[:-pad]
        if not len(labels):
            return
        k = min(self.k, scores.shape[1])
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        hit1 = scores.argmax(axis=1) == labels
        hitk = (best == labels[:, None]).any(axis=1)
        self.count += len(labels)
        self.top1 += int(hit1.sum())
        self.topk += int(hitk.sum())
        if self.num_classes:
            np.add.at(self.class_total, labels, 1)
            np.add.at(self.class_top1, labels, hit1.astype(np.int64))
            np.add.at(self.class_topk, labels, hitk.astype(np.int64))

    def get(self):
        """(top-1, top-k) as fractions; (nan, nan) before any update."""
        if not self.count:
            return float("nan"), float("nan")
        return self.top1 / self.count, self.topk / self.count


class MetricsLog:
    """Appends one JSON object per line to `path` (the run's metrics history)."""

    def __init__(self, path):
        self.path = path

    def rewrite(self, records):
        """Replace the file with `records` (atomically): a resumed run starts from what its
        checkpoint knows, so the epochs done after that checkpoint are not listed twice."""
        from .checkpoint import atomic_write

        def dump(tmp):
            with open(tmp, "w") as f:
                f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)

        atomic_write(self.path, dump)

    def write(self, record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def plot_curves(history, path, title=""):
    """Loss and top-1 error per epoch (training, and validation where measured) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .checkpoint import atomic_write

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="training loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key, label in (("train_top1", "training top-1"), ("val_top1", "validation top-1")):
        points = [(h["epoch"], 100 * h[key]) for h in history if h.get(key) is not None]
        if points:
            ax_acc.plot(*zip(*points), "o-", label=label)
    points = [(h["epoch"], 100 * h["val_top5"]) for h in history if h.get("val_top5") is not None]
    if points:
        ax_acc.plot(*zip(*points), "s--", label="validation top-5")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(0, 100)
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
