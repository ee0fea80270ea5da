"""Learning-rate schedules as pure functions of the global step (and, for ``plateau``, of the
training accuracy history the checkpoint holds), so that a resumed run takes exactly the
learning rates an uninterrupted one would."""

import math
from dataclasses import dataclass

MODES = ("step", "cosine", "poly", "plateau")


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up from `warmup_lr` to `lr` over `warmup_epochs`, then:

    - ``step``: lr x decay^k, where k is the number of `decay_epochs` already passed;
    - ``plateau``: the same, with `decay_epochs` the epochs where training accuracy saturated
      (see :func:`plateau_decay_epochs`; the caller passes them as they are decided);
    - ``cosine``: half a cosine from lr to `target_lr` over the epochs after warm-up;
    - ``poly``: lr x (1 - t)^power, t the fraction of the epochs after warm-up done.
    Epochs may be fractional (the step counts within an epoch)."""

    lr: float
    num_epochs: int
    iters_per_epoch: int
    mode: str = "step"
    decay: float = 0.1
    decay_epochs: tuple = ()
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    target_lr: float = 0.0
    power: float = 2.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"--lr-mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.iters_per_epoch < 1:
            raise ValueError("a learning-rate schedule needs at least one batch per epoch")

    def __call__(self, step):
        """The learning rate of global step `step` (0-based: the first batch of epoch 0)."""
        epoch = step / self.iters_per_epoch
        if epoch < self.warmup_epochs:
            return self.warmup_lr + (self.lr - self.warmup_lr) * epoch / self.warmup_epochs
        if self.mode in ("step", "plateau"):
            passed = sum(1 for e in self.decay_epochs if epoch >= e)
            return self.lr * self.decay**passed
        span = max(self.num_epochs - self.warmup_epochs, 1e-12)
        t = min(max((epoch - self.warmup_epochs) / span, 0.0), 1.0)
        if self.mode == "cosine":
            return self.target_lr + (self.lr - self.target_lr) * (1 + math.cos(math.pi * t)) / 2
        return self.target_lr + (self.lr - self.target_lr) * (1 - t) ** self.power


def plateau_decay_epochs(train_top1, threshold=0.001, patience=5, max_decays=3):
    """The epochs after which ``--lr-mode plateau`` cuts the learning rate, from the training top-1
    of each completed epoch (``train_top1[e]`` after epoch e + 1): a cut after an epoch when top-1
    has not beaten its best by more than `threshold` for `patience` epochs in a row, at most
    `max_decays` cuts; the wait starts again after each cut.  A pure function of the history, so a
    run resumed from any checkpoint decides exactly as an uninterrupted one."""
    epochs, best, wait = [], -math.inf, 0
    for epoch, top1 in enumerate(train_top1, start=1):
        if top1 is not None and top1 > best + threshold:
            best, wait = top1, 0
            continue
        wait += 1
        if wait >= patience and len(epochs) < max_decays:
            epochs.append(epoch)
            wait = 0
    return tuple(epochs)


def parse_decay_epochs(text, flag="--lr-decay-epoch", unit="epochs", example="30,60,90"):
    """'30,60,90' -> (30, 60, 90); a clear error otherwise.  (Also --lr-decay-iters: iterations.)"""
    try:
        epochs = tuple(int(e) for e in str(text).split(",") if e.strip())
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated {unit} like {example}, got {text!r}") from None
    if list(epochs) != sorted(epochs) or any(e < 0 for e in epochs):
        raise ValueError(f"{flag} must be increasing non-negative {unit}, got {text!r}")
    return epochs


def iteration_plan(num_epochs, steps_per_epoch, decay_epochs, accumulate=1, num_iters=None, decay_iters=None):
    """(epochs to run, batches in all, decay points in epochs) of a run whose length and decay
    points are given in epochs or, as the paper gives its video recipes ("x0.1 at 20k and 30k
    iterations, stop at 37k"), in iterations: optimizer updates, each of `accumulate` batches.
    An iteration count ends the run inside its last epoch; decay points become fractional
    epochs, which the Schedule takes as they are (it counts the steps within an epoch)."""
    total = num_epochs * steps_per_epoch if num_iters is None else num_iters * accumulate
    epochs = -(-total // steps_per_epoch)
    if decay_iters is not None:
        decay_epochs = tuple(i * accumulate / steps_per_epoch for i in decay_iters)
    return epochs, total, tuple(decay_epochs)
