"""The paper's recipes as files (configs/*.yaml), --dry-run, the plateau schedule, gradient
accumulation, the model EMA and --keep-checkpoints."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from conftest import ROOT, TEST_ENV, TINY, TRAIN_SCRIPT

from a2gluon.deploy import load_gluon_model
from a2gluon.engine import checkpoint
from a2gluon.engine.accumulate import GradientAccumulator
from a2gluon.engine.ema import ModelEMA
from a2gluon.engine.schedule import plateau_decay_epochs
from a2gluon.models import get_model

# The image recipes (a2gluon train); the video ones (train-video) are tests/test_video_train_eval.py's.
CONFIGS = sorted(p for p in Path(ROOT, "configs").glob("*.yaml") if "_3d_" not in p.name)
A2GLUON = [sys.executable, "-m", "a2gluon"]


def train(args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, TRAIN_SCRIPT] + args,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or TEST_ENV,
    )


def dry_run(args, workers=None):
    env = dict(TEST_ENV, DMLC_NUM_WORKER=str(workers)) if workers else TEST_ENV
    out = train(args + ["--dry-run"], env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


# --- recipe files ---------------------------------------------------------------------------------


def test_the_paper_recipes_are_there():
    names = {p.name for p in CONFIGS}
    assert {"a2_resnet50_paper.yaml", "resnet50_paper.yaml", "a2_resnet50_gluoncv.yaml"} <= names
    for path in CONFIGS:
        header = [line for line in path.read_text().splitlines() if line.startswith("#")]
        text = " ".join(header)
        assert len(header) >= 8 and "GPU" in text and "Our choices" in text, path.name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_recipe_dry_runs_and_builds_its_model(path):
    plan = dry_run(["--config", str(path), "--num-gpus", "8"])  # one machine of 8 GPUs
    for key in ("model", "global_batch", "per_device_batch", "devices", "workers", "accumulate", "lr"):
        assert key in plan, key
    for key in ("lr_mode", "num_epochs", "lr_milestones", "warmup_epochs", "wd", "dtype", "config"):
        assert key in plan, key
    assert plan["config"] == str(path) and plan["workers"] == 1 and len(plan["devices"]) == 8
    assert plan["global_batch"] == plan["per_device_batch"] * 8 * plan["accumulate"]
    net = get_model(plan["model"], classes=10)
    net.initialize()
    assert net(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 10)


def test_the_paper_recipe_on_64_and_on_8_gpus():
    paper = str(Path(ROOT, "configs", "a2_resnet50_paper.yaml"))
    on64 = dry_run(["--config", paper, "--num-gpus", "8", "--kvstore", "dist_sync"], workers=8)
    assert (on64["global_batch"], on64["accumulate"], on64["lr"]) == (2048, 1, 0.316)
    assert on64["lr_mode"] == "plateau" and on64["momentum"] == 0.9 and on64["wd"] == 1e-4
    on8 = dry_run(["--config", paper, "--num-gpus", "8"])
    assert (on8["global_batch"], on8["accumulate"], on8["lr"]) == (2048, 8, 0.316)
    linear = dry_run(["--config", paper, "--num-gpus", "8", "--lr-scaling", "linear"])
    assert (linear["global_batch"], linear["accumulate"]) == (256, 1)
    assert linear["lr"] == pytest.approx(0.316 / 8) and "0.316 x 256/2048" in linear["note"]
    # a later flag overrides the file
    assert dry_run(["--config", paper, "--num-gpus", "8", "--lr", "0.2"])["lr"] == 0.2


def test_dry_run_counts_the_steps_of_the_data(digits):
    plan = dry_run(TINY + digits["train"] + ["--batch-size", "16", "--accumulate", "2"])
    assert plan["num_images"] == digits["images"][0]
    assert plan["steps_per_epoch"] == -(-digits["images"][0] // 16)
    assert plan["updates_per_epoch"] == -(-plan["steps_per_epoch"] // 2) and plan["global_batch"] == 32


@pytest.mark.parametrize(
    "text, words",
    [
        ("lr-mod: step\n", ["'lr-mod' is not a flag"]),
        ("lr: fast\n", ["lr takes a float"]),
        ("lr-mode: sometimes\n", ["lr-mode must be one of"]),
        ("mixup: 3\n", ["mixup takes true or false"]),
        ("- a\n- b\n", ["mapping"]),
    ],
)
def test_a_bad_recipe_is_one_line(tmp_path, text, words):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    out = train(["--config", str(path), "--synthetic", "--dry-run"])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert str(path) in last and all(w in last for w in words), last


def test_a_global_batch_the_devices_cannot_reach_is_refused():
    paper = str(Path(ROOT, "configs", "a2_resnet50_paper.yaml"))
    out = train(["--config", paper, "--num-gpus", "3", "--dry-run"])
    assert (
        out.returncode == 2 and "not a multiple of 96" in out.stderr and "--lr-scaling linear" in out.stderr
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_recipe_trains_a_few_steps_on_cpu(path, tmp_path):
    """The recipe's model and optimisation, tiny: 32 x 32 synthetic images, batch 2, 4 steps
    (accumulated to the recipe's batch of 4 here), float32 (float16 is for GPUs)."""
    save = tmp_path / "run"
    args = ["--config", str(path), "--synthetic", "--synthetic-batches", "4", "--input-size", "32"]
    args += ["--batch-size", "2", "--global-batch", "4", "--num-classes", "10", "--num-epochs", "1"]
    args += ["--dtype", "float32", "--num-data-workers", "1", "--log-interval", "1", "--save-dir", str(save)]
    out = train(args)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((save / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(record["train_loss"]) and record["steps"] == 4
    assert "updates of 4 (accumulate 2)" in out.stderr
    assert checkpoint.find_resume(str(save)).epoch == 1


# --- plateau --------------------------------------------------------------------------------------


def test_plateau_cuts_where_training_accuracy_saturates():
    history = [0.10, 0.30, 0.40, 0.4005, 0.401, 0.40, 0.55, 0.56, 0.5601, 0.5602, 0.5603]
    # no gain of 0.001 in 3 epochs after epoch 3 (0.40) -> cut after epoch 6; again after epoch 11
    assert plateau_decay_epochs(history, threshold=0.001, patience=3) == (6, 11)
    assert plateau_decay_epochs(history, threshold=0.001, patience=3, max_decays=1) == (6,)
    assert plateau_decay_epochs(history, threshold=0.5, patience=2) == (3, 5, 7)  # at most 3
    assert plateau_decay_epochs([]) == ()


PLATEAU = TINY + ["--synthetic", "--synthetic-batches", "3", "--num-classes", "10", "--batch-size", "4"]
PLATEAU += ["--lr-mode", "plateau", "--plateau-threshold", "0.5", "--plateau-patience", "2", "--lr", "0.05"]


def _lrs(save):
    return [json.loads(line)["lr"] for line in (save / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_resume_in_the_middle_of_a_plateau_wait_ends_as_an_uninterrupted_run(tmp_path):
    """No epoch gains 0.5 of top-1, so after epoch 1 (the first best) the lr is cut after
    epochs 3 and 5; a run stopped after epoch 4 (one epoch into the second wait) and resumed takes
    the same learning rates and ends with the same parameters to the bit."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train(PLATEAU + ["--num-epochs", "6", "--save-dir", str(whole)]).returncode == 0
    assert train(PLATEAU + ["--num-epochs", "4", "--save-dir", str(split)]).returncode == 0
    out = train(PLATEAU + ["--num-epochs", "6", "--save-dir", str(split), "--resume"])
    assert out.returncode == 0, out.stderr[-3000:]
    lrs = _lrs(whole)
    assert lrs == pytest.approx([0.05, 0.05, 0.05, 0.005, 0.005, 0.0005]) and _lrs(split) == lrs
    a, b = (mx.nd.load(checkpoint.stem(str(d), "a2_resnet26", 6) + ".params") for d in (whole, split))
    assert all(np.array_equal(a[k].asnumpy(), b[k].asnumpy()) for k in a)


# --- gradient accumulation ------------------------------------------------------------------------


def _net(batchnorm, seed=3):
    mx.random.seed(seed)
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(8, 3, in_channels=3, use_bias=not batchnorm))
    if batchnorm:
        net.add(mx.gluon.nn.BatchNorm(in_channels=8))
    net.add(mx.gluon.nn.Activation("relu"), mx.gluon.nn.GlobalAvgPool2D(), mx.gluon.nn.Dense(5, in_units=8))
    net.initialize(mx.init.Xavier())
    return net


def _train_once(batchnorm, every, x, y):
    """One update from the same start: `every` batches of len(x) / every, accumulated."""
    net = _net(batchnorm)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5, "momentum": 0.9})
    acc = GradientAccumulator(net.collect_params(), trainer, every)
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    size = len(x) // every
    updates = 0
    for i in range(every):
        xb, yb = mx.nd.array(x[i * size : (i + 1) * size]), mx.nd.array(y[i * size : (i + 1) * size])
        with mx.autograd.record():
            loss = loss_fn(net(xb), yb)
        loss.backward()
        updates += acc.done(size)
    assert updates == 1 and acc.at_boundary
    return {
        k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items() if p.grad_req != "null"
    }


@pytest.mark.parametrize("batchnorm", [False, True])
def test_n_accumulated_batches_update_as_one_batch_n_times_larger(batchnorm):
    """4 batches of 8 with --accumulate 4 against one batch of 32.  Without BatchNorm the update
    is the same up to float rounding (rtol 1e-5: only the order of the sums differs).  With
    BatchNorm each batch of 8 is normalised with its own statistics, so the update differs: measured
    here at 25 % of the update's largest change (1.5e-6 without BatchNorm)."""
    rng = np.random.RandomState(0)
    x = rng.normal(size=(32, 3, 8, 8)).astype("float32")
    y = rng.randint(0, 5, size=32).astype("float32")
    start = {k: p.data().asnumpy() for k, p in _net(batchnorm)._collect_params_with_prefix().items()}
    big, small = _train_once(batchnorm, 1, x, y), _train_once(batchnorm, 4, x, y)
    moved = max(np.abs(big[k] - start[k]).max() for k in big)
    assert moved > 1e-3
    if not batchnorm:
        for k in big:
            np.testing.assert_allclose(small[k], big[k], rtol=1e-5, atol=1e-6)
    else:
        step = {k: big[k] - start[k] for k in big}
        rel = max(np.abs(small[k] - big[k]).max() / (np.abs(step[k]).max() + 1e-12) for k in big)
        assert 0 < rel < 0.5, rel


# --- model EMA ------------------------------------------------------------------------------------


def test_the_ema_is_the_moving_average_of_every_value():
    net = _net(True)
    net(mx.nd.zeros((2, 3, 8, 8)))
    ema = ModelEMA(net, decay=0.9)
    params = net._collect_params_with_prefix()
    want = {k: p.data().asnumpy().astype(np.float64) for k, p in params.items()}
    for step in range(3):
        for p in params.values():
            p.set_data(p.data() + step + 1)
        ema.update()
        for k, p in params.items():
            want[k] = 0.9 * want[k] + 0.1 * p.data().asnumpy()
    assert any("running_var" in k for k in want)
    for k in want:
        np.testing.assert_allclose(ema.values[k].asnumpy(), want[k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_ema_is_validated_saved_and_resumed(digits, tmp_path):
    """--model-ema on the digits: every checkpoint has its -ema.params (checksummed), validation
    reports the EMA's accuracy, -best has its EMA too, and a run stopped by SIGTERM mid-epoch and
    resumed ends with the EMA of an uninterrupted run, to the bit."""
    args = TINY + digits["train"] + digits["val"] + ["--batch-size", "64", "--num-epochs", "1"]
    args += ["--model-ema", "--model-ema-decay", "0.9", "--log-interval", "1"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    out = train(args + ["--save-dir", str(whole)])
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((whole / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= record["val_top1_ema"] <= 1 and "validation of the EMA" in out.stderr
    ck = checkpoint.find_resume(str(whole))
    assert "ema" in ck.meta["files"] and Path(ck.stem + "-ema.params").exists()
    assert Path(checkpoint.best_stem(str(whole), "a2_resnet26") + "-ema.params").exists()

    # the EMA is what `eval --ema` scores and what `export --ema` writes
    best = checkpoint.best_stem(str(whole), "a2_resnet26")
    cli = [sys.executable, "-m", "a2gluon"]
    result = tmp_path / "eval.json"
    for command in (
        ["eval", "--params", best + ".params", "--ema", "--rec-val", digits["val"][1], "--rec-val-idx"]
        + [digits["val"][3], "--json-out", str(result), "--no-progress", "--no-fuse"],
        ["export", "--params", best + ".params", "--ema", "--out", str(tmp_path / "e")],
    ):
        out = subprocess.run(cli + command, capture_output=True, text=True, env=TEST_ENV, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(result.read_text())["top1"] == pytest.approx(record["val_top1_ema"], abs=1e-6)
    assert json.loads((tmp_path / "e.json").read_text())["weights"] == "ema"

    meta = json.loads((tmp_path / "e.json").read_text())

    def weights(params, ema=False):
        kwargs = dict(model_kwargs=meta["model_kwargs"]) if not str(params).startswith(best) else {}
        loaded = load_gluon_model(meta["model"], str(params), ema=ema, **kwargs).net.collect_params()
        return {k: p.data().asnumpy() for k, p in loaded.items()}

    exported, averaged, model = (
        weights(tmp_path / "e-0000.params"),
        weights(best + ".params", True),
        weights(best + ".params"),
    )
    assert all(np.array_equal(exported[k], averaged[k]) for k in averaged)
    assert not all(np.array_equal(model[k], averaged[k]) for k in averaged)

    proc = subprocess.Popen(
        [sys.executable, TRAIN_SCRIPT] + args + ["--save-dir", str(stopped)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=TEST_ENV,
    )
    for line in proc.stderr:
        if "Epoch[1/1] Batch[5/" in line:
            proc.send_signal(signal.SIGTERM)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert checkpoint.find_resume(str(stopped)).batch >= 5  # the signal lands at batch 5 or later
    out = train(args + ["--save-dir", str(stopped), "--resume"])
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = (mx.nd.load(checkpoint.stem(str(d), "a2_resnet26", 1) + "-ema.params") for d in (whole, stopped))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k].asnumpy(), b[k].asnumpy()) for k in a)


# --- keep the disk bounded ------------------------------------------------------------------------

KEEP = TINY + ["--synthetic", "--synthetic-batches", "3", "--num-classes", "10", "--batch-size", "4"]
KEEP += ["--num-epochs", "8", "--keep-checkpoints", "2", "--log-interval", "1"]


def _complete_epochs(save):
    return [c.epoch for c in checkpoint.list_checkpoints(str(save)) if c.batch == 0 and c.error is None]


@pytest.mark.slow
def test_keep_checkpoints_never_leaves_fewer_than_k_under_kill_9(tmp_path):
    """--keep-checkpoints 2 over 8 epochs, killed 6 times (at random batches and while a
    checkpoint is written, which is when the older ones are deleted) and resumed: after every
    kill at least min(2, epochs done) complete checkpoints remain, and at the end only the files
    of the 2 newest are left."""
    from test_reliability import _interrupt

    save = tmp_path / "run"
    triggers = [("writing", ".json"), ("batches", 4), ("writing", ".params"), ("batches", 2)]
    triggers += [("writing", ".json"), ("batches", 5)]
    resume = []
    for trigger in triggers + [None]:
        proc = subprocess.Popen(
            [sys.executable, TRAIN_SCRIPT] + KEEP + ["--save-dir", str(save)] + resume,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=TEST_ENV,
        )
        if trigger is not None:
            _interrupt(proc, save, trigger, signal.SIGKILL)
        proc.wait(timeout=300)
        done = _complete_epochs(save)
        assert len(done) >= min(2, max(done, default=0)), done
        resume = ["--resume"]
    assert proc.returncode == 0
    assert _complete_epochs(save) == [7, 8]
    left = sorted(n for n in os.listdir(save) if n.startswith("imagenet-"))
    assert all("-0007" in n or "-0008" in n for n in left), left
