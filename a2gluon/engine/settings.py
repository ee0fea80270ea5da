"""What a training run is asked to do, apart from its data: the trainer's settings, named as the
command-line flags (and the recipe files' keys) name them, checked before any work."""

import dataclasses
from dataclasses import dataclass

from ..models.registry import ATTENTION_CHOICES, model_options
from .distributed import KVSTORES
from .schedule import MODES, iteration_plan, parse_decay_epochs

DTYPES = ("float32", "float16", "bfloat16")
# How --pretrained-2d makes a 2-D kernel 3-D (a2gluon.models.inflate).
INFLATE_MODES = ("mean", "centre")
# How a recipe's global batch is kept when the devices give another: "none" keeps the recipe's
# lr and reaches the batch by accumulating gradients; "linear" trains with the devices' batch and
# scales the lr by it (Goyal et al.).
LR_SCALING = ("none", "linear")
# Settings that define the network: a checkpoint only resumes into the same ones.
MODEL_SETTINGS = ("model", "attention", "blocks", "reduction", "num_classes")


class TrainError(ValueError):
    """The run cannot start or go on; the message says what is wrong and what to do."""


def flag(name):
    """The command-line flag of a setting: num_epochs -> --num-epochs."""
    return "--" + name.replace("_", "-")


@dataclass
class TrainSettings:
    """Everything the training loop needs besides the model's data source (see
    a2gluon.data.sources).  Field names are the flags' names; defaults are the flags' defaults."""

    # the network
    model: str = "a2_resnet50"
    num_classes: int = None  # None: the data's class count
    attention: str = None  # None: the model's own; "none": no attention blocks
    blocks: str = None  # "conv3:2,conv4:2"
    reduction: int = None  # m = n = channels / reduction
    last_gamma: bool = False
    pretrained_2d: str = None  # an image network's checkpoint, inflated into this video network
    pretrained: str = None  # a checkpoint of this network (another class count: new classifier)
    inflate: str = "mean"  # --pretrained-2d: mean (kernel / k repeated k times) or centre
    # optimisation
    batch_size: int = 32  # per device
    num_epochs: int = 120
    lr: float = 0.1  # for the global batch
    lr_mode: str = "step"
    lr_decay: float = 0.1
    lr_decay_epoch: str = "30,60,90"
    num_iters: int = None  # stop after this many iterations (updates), overriding --num-epochs
    lr_decay_iters: str = None  # step mode: iterations where lr decays, overriding --lr-decay-epoch
    plateau_threshold: float = 0.001  # plateau: the least gain in training top-1 that counts
    plateau_patience: int = 5  # plateau: epochs without that gain before a cut
    plateau_max_decays: int = 3
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    wd: float = 1e-4
    no_wd: bool = False
    label_smoothing: float = 0.0
    mixup: bool = False
    mixup_alpha: float = 0.2
    mixup_off_epoch: int = 0  # 0: mix every epoch
    dtype: str = "float32"
    accumulate: int = 1  # batches whose gradients are summed before one update
    global_batch: int = None  # the recipe's global batch (None: what the devices give)
    lr_scaling: str = "none"  # when the devices give another global batch: none (accumulate) | linear
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    # devices and the run
    num_gpus: int = 0
    num_cpus: int = 1
    kvstore: str = "device"
    save_dir: str = "params"
    save_frequency: int = 1
    val_interval: int = 1
    resume: bool = False
    resume_epoch: int = None
    force: bool = False
    keep_checkpoints: int = 0  # 0: keep every epoch's checkpoint
    log_interval: int = 50
    seed: int = 0

    @classmethod
    def from_namespace(cls, namespace):
        """The settings among an argparse namespace's attributes (the data flags are left out)."""
        values = vars(namespace)
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    def as_dict(self):
        return dataclasses.asdict(self)

    @property
    def decay_epochs(self):
        return parse_decay_epochs(self.lr_decay_epoch)

    @property
    def decay_iters(self):
        if self.lr_decay_iters is None:
            return None
        return parse_decay_epochs(self.lr_decay_iters, "--lr-decay-iters", "iterations", "20000,30000")

    def iteration_plan(self, steps_per_epoch, accumulate=1):
        """(epochs to run, batches in all, decay points in epochs) for `steps_per_epoch` batches
        per epoch: --num-epochs and --lr-decay-epoch, or --num-iters and --lr-decay-iters."""
        return iteration_plan(
            self.num_epochs, steps_per_epoch, self.decay_epochs, accumulate, self.num_iters, self.decay_iters
        )

    @property
    def mixup_epochs(self):
        """Epochs with mixup: all of them, unless --mixup-off-epoch stops it earlier."""
        if not self.mixup:
            return 0
        return self.mixup_off_epoch or self.num_epochs

    def model_kwargs(self):
        """get_model keyword arguments (see a2gluon.models.model_options)."""
        return model_options(self.attention, self.blocks, self.reduction, self.last_gamma)

    def check(self):
        """Raise TrainError for an impossible setting (one line: the flag, the range, the value)."""
        at_least = {
            "batch_size": 1,
            "num_epochs": 1,
            "save_frequency": 1,
            "val_interval": 1,
            "log_interval": 1,
            "num_gpus": 0,
            "num_cpus": 1,
            "mixup_off_epoch": 0,
            "accumulate": 1,
            "plateau_patience": 1,
            "plateau_max_decays": 0,
            "keep_checkpoints": 0,
        }
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise TrainError(f"{flag(name)} must be at least {low}, got {getattr(self, name)}")
        for name in ("reduction", "num_classes", "global_batch", "num_iters"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainError(f"{flag(name)} must be at least 1, got {value}")
        if self.resume_epoch is not None and self.resume_epoch < 1:
            raise TrainError(f"--resume-epoch counts completed epochs (1, 2, ...), got {self.resume_epoch}")
        for name in ("lr", "lr_decay", "mixup_alpha"):
            if not getattr(self, name) > 0:
                raise TrainError(f"{flag(name)} must be positive, got {getattr(self, name)}")
        for name in ("wd", "warmup_epochs", "warmup_lr", "plateau_threshold"):
            if getattr(self, name) < 0:
                raise TrainError(f"{flag(name)} must be 0 or more, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise TrainError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.model_ema_decay < 1:
            raise TrainError(f"--model-ema-decay must be in (0, 1), got {self.model_ema_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise TrainError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        choices = {
            "lr_mode": MODES,
            "dtype": DTYPES,
            "kvstore": KVSTORES,
            "lr_scaling": LR_SCALING,
            "inflate": INFLATE_MODES,
        }
        for name, allowed in choices.items():
            if str(getattr(self, name)).lower() not in allowed:
                raise TrainError(
                    f"{flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.attention is not None and self.attention not in ATTENTION_CHOICES:
            raise TrainError(
                f"--attention must be one of {', '.join(ATTENTION_CHOICES)}, got {self.attention!r}"
            )
        if self.num_gpus and self.num_cpus > 1:
            raise TrainError("give --num-gpus or --num-cpus, not both")
        if self.force and (self.resume or self.resume_epoch is not None):
            raise TrainError("give --resume (continue the run) or --force (start over), not both")
        if self.attention == "none" and (self.blocks or self.reduction):
            raise TrainError(
                "--attention none builds the network without attention blocks; drop "
                + ("--blocks" if self.blocks else "--reduction")
            )
        try:
            self.decay_epochs  # noqa: B018  (parses --lr-decay-epoch)
            self.decay_iters  # noqa: B018  (parses --lr-decay-iters)
        except ValueError as err:
            raise TrainError(str(err)) from None
        if self.pretrained_2d and self.pretrained:
            raise TrainError("give --pretrained-2d (an image network to inflate) or --pretrained, not both")


def resolve_batch(settings, devices, workers):
    """(accumulate, lr, note) for `devices` per worker and `workers` workers: the recipe's
    --global-batch reached by accumulation (--lr-scaling none) or the devices' batch with the lr
    scaled linearly (--lr-scaling linear).  Without --global-batch, the settings as given."""
    per_step = settings.batch_size * devices * workers
    given = per_step * settings.accumulate
    target = settings.global_batch
    if target is None or target == given:
        return settings.accumulate, settings.lr, None
    if settings.lr_scaling == "linear":
        lr = settings.lr * given / target
        note = (
            f"global batch {given} instead of the recipe's {target}: "
            f"lr {settings.lr:g} x {given}/{target} = {lr:g}"
        )
        return settings.accumulate, lr, note
    if target % per_step:
        raise TrainError(
            f"--global-batch {target} is not a multiple of {per_step} (--batch-size {settings.batch_size} x "
            f"{devices} device(s) x {workers} worker(s)); choose a --batch-size that divides it, or "
            "--lr-scaling linear to train with the devices' batch"
        )
    accumulate = target // per_step
    note = f"global batch {target} = {per_step} per step x --accumulate {accumulate}"
    return accumulate, settings.lr, note


def run_plan(settings, devices, workers, num_images=None, config=None):
    """What a run of `settings` on `devices` per worker (names) and `workers` workers will do,
    as the JSON object ``a2gluon train --dry-run`` prints; nothing is touched."""
    accumulate, lr, note = resolve_batch(settings, len(devices), workers)
    per_worker = settings.batch_size * len(devices)
    plan = {
        "model": settings.model,
        "config": config,
        "global_batch": per_worker * workers * accumulate,
        "per_device_batch": settings.batch_size,
        "devices": list(devices),
        "workers": workers,
        "accumulate": accumulate,
        "lr": lr,
        "lr_mode": settings.lr_mode,
        "lr_decay": settings.lr_decay,
        "num_epochs": settings.num_epochs,
        "warmup_epochs": settings.warmup_epochs,
        "wd": settings.wd,
        "momentum": settings.momentum,
        "dtype": settings.dtype,
        "kvstore": settings.kvstore,
        "model_ema": settings.model_ema,
        "keep_checkpoints": settings.keep_checkpoints,
    }
    if settings.num_iters is not None:  # the epochs follow from the data's size, when known
        plan.update(num_iters=settings.num_iters, num_epochs=None)
    if settings.lr_mode == "step" and settings.lr_decay_iters is not None:
        plan["lr_milestones"] = list(settings.decay_iters)
        plan["lr_milestones_in"] = "iterations"
    elif settings.lr_mode == "step":
        plan["lr_milestones"] = list(settings.decay_epochs)
    elif settings.lr_mode == "plateau":
        plan["lr_milestones"] = (
            f"when training top-1 gains less than {settings.plateau_threshold:g} in "
            f"{settings.plateau_patience} epochs, at most {settings.plateau_max_decays} times"
        )
    else:
        plan["lr_milestones"] = []
    if num_images is not None:
        steps = -(-num_images // (per_worker * workers))
        plan.update(num_images=num_images, steps_per_epoch=steps, updates_per_epoch=-(-steps // accumulate))
        if settings.num_iters is not None or settings.lr_decay_iters is not None:
            epochs, _, decay = settings.iteration_plan(steps, accumulate)
            plan["num_epochs"] = epochs
            if settings.lr_mode == "step":
                plan["lr_milestones_epochs"] = [round(e, 3) for e in decay]
    for name in ("pretrained_2d", "pretrained"):
        if getattr(settings, name):
            plan[name] = getattr(settings, name)
    if note:
        plan["note"] = note
    return plan
