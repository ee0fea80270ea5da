"""train_imagenet.py: schedules, checkpoints, multi-device training, real-data learning, resume
after kill -9 and SIGTERM, and one-line errors on bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEST_ENV, TINY, TRAIN_SCRIPT

from a2gluon.engine import checkpoint
from a2gluon.engine.schedule import Schedule, parse_decay_epochs

TRAIN = [sys.executable, TRAIN_SCRIPT]
ENV = TEST_ENV


def run(args, timeout=600, **kwargs):
    return subprocess.run(TRAIN + args, capture_output=True, text=True, timeout=timeout, env=ENV, **kwargs)


def metrics(save_dir):
    with open(os.path.join(save_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# --- schedule -------------------------------------------------------------------------------


def test_step_schedule_with_warmup():
    s = Schedule(lr=0.4, num_epochs=10, iters_per_epoch=10, mode="step", decay_epochs=(4, 8), warmup_epochs=2)
    assert s(0) == 0.0
    assert s(10) == pytest.approx(0.2)  # half-way through warm-up
    assert s(20) == pytest.approx(0.4)
    assert s(39) == pytest.approx(0.4)
    assert s(40) == pytest.approx(0.04)
    assert s(80) == pytest.approx(0.004)


def test_cosine_and_poly_schedules_end_at_the_target():
    cos = Schedule(lr=1.0, num_epochs=4, iters_per_epoch=5, mode="cosine")
    assert cos(0) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(0.5)
    assert cos(20) == pytest.approx(0.0, abs=1e-12)
    poly = Schedule(lr=1.0, num_epochs=4, iters_per_epoch=5, mode="poly", power=2)
    assert poly(10) == pytest.approx(0.25)
    values = [cos(i) for i in range(20)]
    assert values == sorted(values, reverse=True)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="lr-mode"):
        Schedule(lr=1, num_epochs=1, iters_per_epoch=1, mode="linear")
    with pytest.raises(ValueError, match="increasing"):
        parse_decay_epochs("60,30")
    with pytest.raises(ValueError, match="comma-separated"):
        parse_decay_epochs("a,b")


# --- checkpoints ----------------------------------------------------------------------------


class _Net:
    def save_parameters(self, path):
        Path(path).write_bytes(b"params")


def test_only_complete_checkpoints_are_found(tmp_path):
    d = str(tmp_path)
    net = _Net()

    class Trainer:
        def save_states(self, path):
            Path(path).write_bytes(b"states")

    checkpoint.save(d, "m", net, Trainer(), {"x": 1}, epoch=1)
    checkpoint.save(d, "m", net, Trainer(), {"x": 2}, epoch=2)
    # a write killed half-way: params and states of epoch 3 but no JSON, and a temporary file
    Path(checkpoint.stem(d, "m", 3) + ".params").write_bytes(b"partial")
    Path(checkpoint.stem(d, "m", 3) + ".states").write_bytes(b"partial")
    Path(d, ".tmp-abc-imagenet-m-0004.json").write_text("{")
    found = checkpoint.list_checkpoints(d, "m")
    assert [c.epoch for c in found] == [1, 2]
    assert checkpoint.find_resume(d, "m").epoch == 2
    assert checkpoint.find_resume(d, "m", epoch=1).meta["x"] == 1
    with pytest.raises(checkpoint.CheckpointError, match="after epoch 7"):
        checkpoint.find_resume(d, "m", epoch=7)
    mid = checkpoint.save(d, "m", net, Trainer(), {"x": 3}, epoch=2, batch=5)
    assert checkpoint.find_resume(d, "m").stem == mid.stem


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a.params"
    path.write_bytes(b"old")

    def broken(tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.atomic_write(str(path), broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.params"]


# --- training runs --------------------------------------------------------------------------


def test_synthetic_two_cpu_contexts_keeps_the_copies_identical(tmp_path):
    """The multi-device path (split_and_load over two contexts, kvstore 'device'): the run
    writes its checkpoint, log, metrics and curves, and both devices' copies of every trained
    parameter end equal."""
    save = tmp_path / "run"
    code = f"""
import sys, mxnet as mx, numpy as np
sys.argv = ['train'] + {TINY!r} + ['--synthetic', '--synthetic-batches', '3', '--num-classes', '10',
    '--batch-size', '4', '--num-cpus', '2', '--num-epochs', '2', '--lr', '0.05', '--save-dir', {str(save)!r}]
from a2gluon.cli import train as cli
import a2gluon.engine.trainer as t
captured = {{}}
real = t.make_trainer
def spy(params, *a, **k):
    captured['params'] = params
    return real(params, *a, **k)
t.make_trainer = spy
assert cli.main(sys.argv[1:]) == 0
for name, p in captured['params'].items():
    if p.grad_req == 'null':
        continue  # BatchNorm running statistics are kept per device
    a, b = [d.asnumpy() for d in p.list_data()]
    assert np.array_equal(a, b), name
print('contexts', len(p.list_data()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "contexts 2" in out.stdout
    for name in (
        "imagenet-a2_resnet26-0002.params",
        "imagenet-a2_resnet26-0002.states",
        "train.log",
        "curves.png",
    ):
        assert (save / name).exists(), name
    meta = json.loads((save / "imagenet-a2_resnet26-0002.json").read_text())
    assert meta["epoch"] == 2 and meta["num_classes"] == 10 and meta["model"] == "a2_resnet26"
    records = metrics(save)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["steps"] == 3 * r["epoch"] for r in records)
    assert "img/s" in (save / "train.log").read_text()


@pytest.mark.slow
def test_learns_real_digits_far_above_chance(digits, digits_run):
    """a2_resnet26 on 1438 real digit scans at 32 x 32 (10 classes, chance 10 %), 6 epochs on the
    CPU (about 80 s; DIGITS_RECIPE in conftest.py), evaluated on the 359 held-out scans.  Reached
    95.3 % top-1 and 99.7 % top-5 when written."""
    save, _ = digits_run
    records = metrics(save)
    final = records[-1]
    print(f"digits: validation top-1 {final['val_top1']:.3f}, top-5 {final['val_top5']:.3f}")
    assert final["val_images"] == digits["images"][1]
    assert final["val_top1"] > 0.8, records
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    best = json.loads((save / "imagenet-a2_resnet26-best.json").read_text())
    assert best["top1"] == max(r["val_top1"] for r in records)
    assert best["classes"][:2] == ["digit0", "digit1"]


def _wait_for(path, proc, timeout=300):
    start = time.time()
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read()[-3000:])
        if time.time() - start > timeout:
            proc.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.2)


RESUMABLE = TINY + [
    "--synthetic",
    "--synthetic-batches",
    "6",
    "--num-classes",
    "10",
    "--batch-size",
    "4",
    "--num-epochs",
    "4",
    "--lr-decay-epoch",
    "2,3",
    "--warmup-epochs",
    "1",
    "--log-interval",
    "1",
]


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole = tmp_path / "whole"
    out = run(RESUMABLE + ["--save-dir", str(whole)])
    assert out.returncode == 0, out.stderr[-3000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        TRAIN + RESUMABLE + ["--save-dir", str(killed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _wait_for(checkpoint.stem(str(killed), "a2_resnet26", 2) + ".json", proc)
    # now in epoch 3: let it run a few batches, then kill it without warning
    _wait_log = killed / "train.log"
    start = time.time()
    while "Epoch[3/4] Batch[2/6]" not in _wait_log.read_text() and time.time() - start < 120:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # what a kill during a checkpoint write would leave: a partial params file with no JSON
    partial = checkpoint.stem(str(killed), "a2_resnet26", 3) + ".params"
    Path(partial).write_bytes(b"\0garbage")
    assert max(r["epoch"] for r in metrics(killed)) == 2

    out = run(RESUMABLE + ["--save-dir", str(killed), "--resume"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from imagenet-a2_resnet26-0002 (epoch 2)" in out.stderr
    a, b = metrics(whole), metrics(killed)
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    assert [(r["epoch"], r["steps"], r["lr"]) for r in a] == [(r["epoch"], r["steps"], r["lr"]) for r in b]
    # the same data, the same schedule and the same starting weights: the same loss
    assert b[2]["train_loss"] == pytest.approx(a[2]["train_loss"], rel=1e-3)
    assert (
        json.loads(Path(checkpoint.stem(str(killed), "a2_resnet26", 4) + ".json").read_text())["epoch"] == 4
    )


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_and_resume_finishes(tmp_path):
    save = tmp_path / "run"
    proc = subprocess.Popen(
        TRAIN + RESUMABLE + ["--save-dir", str(save), "--num-epochs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    log = save / "train.log"
    _wait_for(str(log), proc)
    start = time.time()
    while "Epoch[1/2] Batch[2/6]" not in log.read_text() and time.time() - start < 120:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "--resume" in err
    mid = checkpoint.find_resume(str(save), "a2_resnet26")
    assert mid.epoch == 0 and 2 <= mid.batch < 6
    out = run(RESUMABLE + ["--save-dir", str(save), "--num-epochs", "2", "--resume"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"batch {mid.batch}" in out.stderr
    assert [r["epoch"] for r in metrics(save)] == [1, 2]
    assert metrics(save)[-1]["steps"] == 12


def test_nan_loss_stops_with_the_epoch_and_batch(tmp_path):
    save = tmp_path / "run"
    out = run(
        TINY
        + [
            "--synthetic",
            "--synthetic-batches",
            "20",
            "--num-classes",
            "10",
            "--batch-size",
            "4",
            "--lr",
            "1e30",
            "--num-epochs",
            "1",
            "--save-dir",
            str(save),
        ]
    )
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()[-1]
    assert "the loss became" in err and "epoch 1, batch" in err
    assert "Traceback" not in out.stderr
    assert checkpoint.list_checkpoints(str(save)) == []


def _one_line_error(out, *words):
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("train_imagenet.py: error:"), out.stderr[-2000:]
    for word in words:
        assert word in last, last
    return last


def test_bad_data_is_reported_before_training(digits, tmp_path):
    d = digits["dir"]
    base = TINY + ["--batch-size", "8", "--num-epochs", "1", "--save-dir", str(tmp_path / "s")]
    rec, idx = digits["train"][1], digits["train"][3]
    _one_line_error(
        run(base + ["--rec-train", str(d / "missing.rec"), "--rec-train-idx", idx]), "missing.rec"
    )
    # an index that belongs to another record file
    _one_line_error(run(base + ["--rec-train", rec, "--rec-train-idx", str(d / "val.idx")]), "idx")
    corrupt = tmp_path / "corrupt.rec"
    corrupt.write_bytes(Path(rec).read_bytes()[: os.path.getsize(rec) // 2])
    _one_line_error(run(base + ["--rec-train", str(corrupt), "--rec-train-idx", idx]))
    # the model's class count disagrees with the data
    _one_line_error(run(base + ["--rec-train", rec, "--rec-train-idx", idx, "--num-classes", "5"]), "classes")
    # a batch larger than the dataset
    _one_line_error(
        run(
            TINY
            + [
                "--rec-train",
                rec,
                "--rec-train-idx",
                idx,
                "--batch-size",
                "5000",
                "--save-dir",
                str(tmp_path / "s"),
            ]
        ),
        "--batch-size",
    )
    assert not any((tmp_path / "s").glob("*.params"))


def test_bad_settings_are_refused(tmp_path):
    base = TINY + ["--synthetic", "--synthetic-batches", "2", "--save-dir", str(tmp_path)]
    _one_line_error(run(base + ["--dtype", "float16"]), "float16", "GPU")
    _one_line_error(run(base + ["--model", "resnet9000"]), "unknown model")
    _one_line_error(run(TINY + ["--save-dir", str(tmp_path)]), "--rec-train")
    _one_line_error(run(base + ["--kvstore", "carrier_pigeon"]), "carrier_pigeon")
    _one_line_error(run(base + ["--resume-epoch", "3"]), "epoch 3")


def test_mixup_and_label_smoothing_measure_accuracy_on_hard_labels(tmp_path):
    """With mixup and smoothing the training top-1 is computed from hard labels: on random
    data it stays near chance (10 %) and never reaches the inflated values smoothed targets give."""
    save = tmp_path / "run"
    out = run(
        TINY
        + [
            "--synthetic",
            "--synthetic-batches",
            "4",
            "--num-classes",
            "10",
            "--batch-size",
            "8",
            "--mixup",
            "--label-smoothing",
            "0.1",
            "--num-epochs",
            "1",
            "--save-dir",
            str(save),
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rec = metrics(save)[0]
    assert 0 <= rec["train_top1"] <= 0.5 and math.isfinite(rec["train_loss"])


@pytest.mark.slow
def test_dist_sync_two_workers_through_the_launcher(tmp_path):
    """train_imagenet.py under the parameter server: two workers and a server on loopback, each
    worker on its half of the steps; rank 0 validates and writes the checkpoints, rank 1 logs."""
    save = tmp_path / "run"
    cmd = [sys.executable, "-m", "a2gluon", "launch", "-n", "2", "-s", "1", "--timeout", "400", "--"]
    cmd += (
        TRAIN + TINY + ["--synthetic", "--synthetic-batches", "3", "--num-classes", "10", "--batch-size", "4"]
    )
    cmd += ["--num-epochs", "2", "--kvstore", "dist_sync", "--save-dir", str(save)]
    env = dict(ENV, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 worker(s)" in (save / "train.log").read_text()
    assert (save / "train-rank1.log").exists()
    records = metrics(save)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["steps"] == 6  # 3 batches of 4 per worker, 2 workers: 24 images, 3 steps
    assert (save / "imagenet-a2_resnet26-0002.params").exists()


def test_bfloat16_trains_on_cpus_that_have_it_and_is_refused_elsewhere(tmp_path):
    from a2gluon.engine.devices import cpu_supports_bfloat16

    save = tmp_path / "run"
    args = TINY + ["--synthetic", "--synthetic-batches", "3", "--num-classes", "10", "--batch-size", "4"]
    out = run(args + ["--num-epochs", "1", "--dtype", "bfloat16", "--save-dir", str(save)])
    if not cpu_supports_bfloat16():
        _one_line_error(out, "bfloat16", "AVX-512")
        return
    assert out.returncode == 0, out.stderr[-3000:]
    assert "bfloat16" in (save / "train.log").read_text()
    record = metrics(save)[0]
    assert math.isfinite(record["train_loss"])
    # AMP keeps the master weights in float32: the checkpoint loads into a float32 network
    import numpy as np

    from a2gluon.models import get_model

    net = get_model("a2_resnet26", classes=10)
    net.load_parameters(str(save / "imagenet-a2_resnet26-0001.params"))
    assert {p.data().dtype for p in net.collect_params().values()} == {np.float32}
