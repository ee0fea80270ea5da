"""A run of days loses nothing, hides nothing and never hangs: kill -9 and SIGTERM at random
moments (also while checkpoint files are written) resume to the bit-identical result of an
uninterrupted run; a run directory is never overwritten or shared; --resume refuses another
network and skips damaged checkpoints; every argument is checked before any work."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from conftest import ROOT, TEST_ENV, TINY, TRAIN_SCRIPT

from a2gluon.engine import checkpoint

TRAIN = [sys.executable, TRAIN_SCRIPT]
MODEL = "a2_resnet26"
BASE = TINY + ["--synthetic", "--synthetic-batches", "6", "--num-classes", "10", "--batch-size", "4"]
# 4 epochs of 6 steps, a step decay and a warm-up: every resume must land on the same schedule.
RUN = BASE + ["--num-epochs", "4", "--lr-decay-epoch", "2,3", "--warmup-epochs", "1", "--log-interval", "1"]


def run(args, timeout=600):
    return subprocess.run(TRAIN + args, capture_output=True, text=True, timeout=timeout, env=TEST_ENV)


def one_line_error(out, *words, code=2):
    assert out.returncode == code, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("train_imagenet.py: error:"), out.stderr[-2000:]
    for word in words:
        assert word in last, last
    return last


def final_arrays(save_dir, epoch=4):
    return mx.nd.load(checkpoint.stem(str(save_dir), MODEL, epoch) + ".params")


def assert_bit_identical(a_dir, b_dir):
    """The final parameters and BatchNorm running statistics of two runs are equal to the bit,
    and so are the optimizer states (momentum, update counts)."""
    a, b = final_arrays(a_dir), final_arrays(b_dir)
    assert sorted(a) == sorted(b)
    assert any("running_var" in name for name in a)
    differ = [name for name in a if not np.array_equal(a[name].asnumpy(), b[name].asnumpy())]
    assert not differ, f"{len(differ)} arrays differ, e.g. {differ[:5]}"
    states = [Path(checkpoint.stem(str(d), MODEL, 4) + ".states").read_bytes() for d in (a_dir, b_dir)]
    assert states[0] == states[1]


def metrics_epochs(save_dir):
    lines = (Path(save_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    save = tmp_path_factory.mktemp("whole") / "run"
    out = run(RUN + ["--save-dir", str(save)])
    assert out.returncode == 0, out.stderr[-3000:]
    return save


def _batches_logged(save_dir):
    log = Path(save_dir) / "train.log"
    return log.read_text().count(" Batch[") if log.exists() else 0


def _interrupt(proc, save_dir, trigger, sig):
    """Wait for `trigger` and send `sig`; False when the run finished first.

    trigger: ("batches", n) - n more batches logged; ("writing", suffix) - a temporary file of a
    checkpoint's `suffix` (.params, .states, .json) appears, i.e. the write is under way."""
    start_batches = _batches_logged(save_dir)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if trigger[0] == "batches":
            hit = _batches_logged(save_dir) >= start_batches + trigger[1]
        else:
            names = os.listdir(save_dir) if os.path.isdir(save_dir) else []
            hit = any(n.startswith(".tmp-") and n.endswith(trigger[1]) for n in names)
        if hit:
            proc.send_signal(sig)
            return True
        time.sleep(0.001 if trigger[0] == "writing" else 0.02)
    return False


def _interrupted_run(save_dir, triggers, sig):
    """Run RUN into save_dir, interrupting it at each trigger in turn with `sig` and resuming
    (--resume) after each, then let it finish.  Returns the number of interruptions that landed."""
    landed, resume = 0, []
    for trigger in triggers + [None]:
        proc = subprocess.Popen(
            TRAIN + RUN + ["--save-dir", str(save_dir)] + resume,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=TEST_ENV,
        )
        if trigger is not None and _interrupt(proc, save_dir, trigger, sig):
            landed += 1
        _, err = proc.communicate(timeout=300)
        if sig == signal.SIGKILL and trigger is not None and proc.returncode == -signal.SIGKILL:
            pass
        else:
            assert proc.returncode == 0, err[-3000:]
        resume = ["--resume"]
        if proc.returncode == 0 and trigger is not None and "finished 4 epochs" in err:
            break  # the interruption came after the end
    return landed


@pytest.mark.slow
def test_kill_9_at_random_moments_and_during_checkpoint_writes_resumes_bit_identical(uninterrupted, tmp_path):
    """12 kill -9s: after a random number of batches, and the moment a checkpoint's .params,
    .states or .json is being written; each followed by --resume.  The result equals an
    uninterrupted run to the bit (parameters, BatchNorm statistics, optimizer states), the
    metrics file lists every epoch once, and no temporary file is left."""
    rng = random.Random(8)
    triggers = []
    for suffix in (".params", ".states", ".json", ".params"):
        triggers += [("writing", suffix), ("batches", rng.randint(1, 8)), ("batches", rng.randint(1, 8))]
    save = tmp_path / "killed"
    landed = _interrupted_run(save, triggers, signal.SIGKILL)
    assert landed >= 10, landed
    assert_bit_identical(uninterrupted, save)
    assert metrics_epochs(save) == [1, 2, 3, 4]
    assert not [n for n in os.listdir(save) if n.startswith(".tmp-")]


@pytest.mark.slow
def test_sigterm_at_random_moments_resumes_bit_identical(uninterrupted, tmp_path):
    """SIGTERM after a random number of batches, 6 times: each stop writes a mid-epoch
    checkpoint (after waiting for the last step, so the BatchNorm statistics are current) and
    exits 0; resumed, the run ends equal to the bit to an uninterrupted one."""
    rng = random.Random(15)
    triggers = [("batches", rng.randint(1, 5)) for _ in range(6)]
    save = tmp_path / "stopped"
    landed = _interrupted_run(save, triggers, signal.SIGTERM)
    assert landed >= 5
    mids = [c for c in checkpoint.list_checkpoints(str(save)) if c.batch]
    assert mids, "no mid-epoch checkpoint was written"
    assert_bit_identical(uninterrupted, save)
    assert metrics_epochs(save) == [1, 2, 3, 4]


# --- one run per directory ------------------------------------------------------------------------


def test_a_run_directory_is_not_overwritten_without_resume_or_force(uninterrupted, tmp_path):
    save = tmp_path / "run"
    short = BASE + ["--num-epochs", "1", "--synthetic-batches", "2"]
    assert run(short + ["--save-dir", str(save)]).returncode == 0
    before = sorted(os.listdir(save))
    last = one_line_error(run(short + ["--save-dir", str(save)]), "--resume", "--force", "0001")
    assert sorted(os.listdir(save)) == before, last
    one_line_error(run(short + ["--save-dir", str(save), "--force", "--resume"]), "not both")
    out = run(short + ["--save-dir", str(save), "--force", "--seed", "3"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--force: removed" in out.stderr
    assert metrics_epochs(save) == [1]
    meta = json.loads(Path(checkpoint.stem(str(save), MODEL, 1) + ".json").read_text())
    assert meta["args"]["seed"] == 3


def test_two_trainers_never_share_a_directory(tmp_path):
    save = tmp_path / "run"
    long_run = BASE + ["--num-epochs", "50", "--synthetic-batches", "50", "--log-interval", "1"]
    first = subprocess.Popen(
        TRAIN + long_run + ["--save-dir", str(save)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=TEST_ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while _batches_logged(save) < 1 and time.monotonic() < deadline:
            assert first.poll() is None
            time.sleep(0.1)
        second = run(long_run + ["--save-dir", str(save), "--resume"])
        last = one_line_error(second, "in use by another training run", f"pid {first.pid}")
        assert "another --save-dir" in last
    finally:
        first.kill()
        first.wait()
    # the lock dies with its owner, even after kill -9
    out = run(BASE + ["--num-epochs", "1", "--synthetic-batches", "1", "--save-dir", str(save), "--force"])
    assert out.returncode == 0, out.stderr[-3000:]


def test_checkpoints_are_readable_by_others_as_the_umask_allows(tmp_path):
    path = tmp_path / "x.params"
    checkpoint.atomic_write(str(path), lambda tmp: Path(tmp).write_bytes(b"x"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --- resume: the same network, intact files ---------------------------------------------------


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    save = tmp_path_factory.mktemp("two") / "run"
    out = run(BASE + ["--num-epochs", "2", "--save-dir", str(save)])
    assert out.returncode == 0, out.stderr[-3000:]
    return save


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--model", "resnet26"], ["is a checkpoint of a2_resnet26", "--model a2_resnet26"]),
        (["--attention", "nonlocal"], ["--attention"]),
        (["--blocks", "conv3:1"], ["--blocks"]),
        (["--reduction", "2"], ["--reduction"]),
        (["--num-classes", "7"], ["classes 10 -> 7"]),
    ],
)
def test_resume_refuses_another_network_naming_what_differs(two_epochs, flags, words):
    base = BASE + ["--num-epochs", "3", "--save-dir", str(two_epochs), "--resume"]
    one_line_error(run(base + flags), *words)


def test_resume_logs_the_safe_changes(two_epochs, tmp_path):
    save = _copy_run(two_epochs, tmp_path / "run")
    out = run(
        BASE
        + ["--num-epochs", "3", "--lr", "0.05", "--log-interval", "2", "--save-dir", str(save), "--resume"]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "changed since imagenet-a2_resnet26-0002: --num-epochs 2 -> 3" in out.stderr
    assert "--lr 0.1 -> 0.05 (the schedule continues" in out.stderr
    assert metrics_epochs(save) == [1, 2, 3]


def _flip_byte(path, offset_from_end=100):
    data = bytearray(Path(path).read_bytes())
    data[-offset_from_end] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def _truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage, file, reason",
    [
        (_truncate, ".params", "bytes but was written with"),
        (_flip_byte, ".params", "SHA-256"),
        (_truncate, ".states", "bytes but was written with"),
        (lambda p: Path(p).write_text('{"model": '), ".json", "not a readable checkpoint description"),
    ],
)
def test_resume_skips_a_damaged_newest_checkpoint_saying_why(two_epochs, tmp_path, damage, file, reason):
    save = _copy_run(two_epochs, tmp_path / "run")
    damage(checkpoint.stem(str(save), MODEL, 2) + file)
    out = run(BASE + ["--num-epochs", "2", "--save-dir", str(save), "--resume"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "skipping imagenet-a2_resnet26-0002:" in out.stderr and reason in out.stderr
    assert "resumed from imagenet-a2_resnet26-0001 (epoch 1)" in out.stderr
    assert checkpoint.damage(checkpoint.list_checkpoints(str(save))[-1]) is None  # epoch 2 rewritten


def test_resume_with_every_checkpoint_damaged_is_one_line(two_epochs, tmp_path):
    save = _copy_run(two_epochs, tmp_path / "run")
    for epoch in (1, 2):
        _truncate(checkpoint.stem(str(save), MODEL, epoch) + ".params")
    one_line_error(run(BASE + ["--save-dir", str(save), "--resume"]), "no checkpoint", "loads", "--force")


def test_old_checkpoints_without_checksums_still_resume(two_epochs, tmp_path):
    save = _copy_run(two_epochs, tmp_path / "run")
    path = Path(checkpoint.stem(str(save), MODEL, 2) + ".json")
    meta = json.loads(path.read_text())
    del meta["files"]
    path.write_text(json.dumps(meta))
    out = run(BASE + ["--num-epochs", "3", "--save-dir", str(save), "--resume"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from imagenet-a2_resnet26-0002" in out.stderr


# --- validation after the checkpoint ------------------------------------------------------------

_CRASHING_VALIDATION = """
import sys
import a2gluon.engine.trainer as trainer
from a2gluon.cli import train as cli

def broken(*args, **kwargs):
    raise RuntimeError("validation crashed")

trainer.evaluate = broken
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_crash_in_validation_keeps_the_epoch_and_resume_validates_it(digits, tmp_path):
    save = tmp_path / "run"
    args = TINY + digits["train"] + digits["val"] + ["--batch-size", "64", "--num-epochs", "1"]
    args += ["--save-dir", str(save)]
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_VALIDATION] + args,
        capture_output=True,
        text=True,
        timeout=600,
        env=TEST_ENV,
    )
    assert crashed.returncode == 1 and "validation crashed" in crashed.stderr.splitlines()[-1]
    ck = checkpoint.find_resume(str(save))
    assert ck.epoch == 1 and ck.meta["val_pending"] is True
    out = run(args + ["--resume"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "validating epoch 1" in out.stderr
    meta = json.loads(Path(checkpoint.stem(str(save), MODEL, 1) + ".json").read_text())
    assert meta["val_pending"] is False and meta["top1"] is not None
    assert (
        json.loads(Path(checkpoint.best_stem(str(save), MODEL) + ".json").read_text())["top1"] == meta["top1"]
    )
    assert metrics_epochs(save) == [1]


# --- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--crop-ratio", "1.5"], ["--crop-ratio", "(0, 1]"]),
        (["--min-random-area", "2"], ["--min-random-area"]),
        (["--num-gpus", "-1"], ["--num-gpus"]),
        (["--num-cpus", "0"], ["--num-cpus"]),
        (["--reduction", "0"], ["--reduction"]),
        (["--attention", "none", "--blocks", "conv3:1"], ["--attention none", "--blocks"]),
        (["--momentum", "1.5"], ["--momentum"]),
        (["--num-data-workers", "0"], ["--num-data-workers"]),
        (["--resume-epoch", "0"], ["--resume-epoch"]),
    ],
)
def test_every_argument_is_checked_before_any_work(digits, tmp_path, flags, words):
    save = tmp_path / "run"
    data = digits["train"] + digits["val"]
    one_line_error(run(TINY + data + ["--batch-size", "8", "--save-dir", str(save)] + flags), *words)
    assert not save.exists()


def test_attention_none_means_no_blocks_on_every_model(tmp_path):
    out = run(
        TINY
        + ["--synthetic", "--synthetic-batches", "1", "--num-classes", "10", "--batch-size", "2"]
        + ["--num-epochs", "1", "--attention", "none", "--save-dir", str(tmp_path / "run")]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    from a2gluon.models import get_model

    saved = mx.nd.load(checkpoint.stem(str(tmp_path / "run"), MODEL, 1) + ".params")
    plain = get_model("resnet26", classes=10)._collect_params_with_prefix()
    assert sorted(saved) == sorted(plain)  # a2_resnet26 without its blocks is resnet26


def test_a_local_kvstore_under_the_launcher_is_refused(monkeypatch):
    from a2gluon.engine.distributed import create_kvstore

    monkeypatch.setenv("DMLC_ROLE", "worker")
    with pytest.raises(ValueError, match="--kvstore dist_sync"):
        create_kvstore("device", 2)


# --- distributed jobs end, and a pre-empted one resumes -------------------------------------------

LAUNCH = [sys.executable, "-m", "a2gluon", "launch", "-n", "2", "-s", "1", "--timeout", "400", "--"]
DIST_ENV = dict(TEST_ENV, OMP_NUM_THREADS="1")


def _damage_record(rec, idx, key, out_rec):
    """A copy of `rec` whose record `key` has random bytes after the JPEG start marker (same
    length, so the index still fits): MXNet's decoder fails on it with an OpenCV assertion."""
    import struct

    table = np.loadtxt(idx, dtype=np.int64, delimiter="\t")
    offset = int(table[table[:, 0] == key][0, 1])
    data = bytearray(Path(rec).read_bytes())
    length = struct.unpack("<I", data[offset + 4 : offset + 8])[0] & ((1 << 29) - 1)
    start, end = offset + 8 + 24 + 2, offset + 8 + length
    data[start:end] = np.random.RandomState(0).randint(0, 256, size=end - start).astype(np.uint8).tobytes()
    Path(out_rec).write_bytes(bytes(data))


@pytest.mark.slow
def test_a_failing_worker_ends_the_dist_job_within_30_s_with_its_message(digits, tmp_path):
    """Worker 1's shard holds a damaged record: it prints the decoder's message and leaves at
    once, and the launcher ends the whole job (servers, scheduler, worker 0) within 30 s."""
    import shutil
    import threading

    rec, idx = digits["train"][1], digits["train"][3]
    bad = tmp_path / "damaged.rec"
    _damage_record(rec, idx, 1200, bad)  # in the second half: worker 1's part
    shutil.copy(rec[: -len(".rec")] + ".classes.json", tmp_path / "damaged.classes.json")
    cmd = LAUNCH + TRAIN + TINY + ["--rec-train", str(bad), "--rec-train-idx", idx, "--batch-size", "8"]
    cmd += ["--num-epochs", "2", "--kvstore", "dist_sync", "--save-dir", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=DIST_ENV)
    lines = []

    def read():
        for line in proc.stderr:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read)
    reader.start()
    proc.wait(timeout=500)
    ended = time.monotonic()
    reader.join()
    text = "\n".join(line for _, line in lines)
    assert proc.returncode == 1, text[-3000:]
    failed = [(t, line) for t, line in lines if line.startswith("train_imagenet.py: error:")]
    assert failed, text[-3000:]
    assert "resize" in failed[0][1] and "Traceback" not in failed[0][1]
    # the launcher names the worker by its task id, which need not be its rank
    assert re.search(r"launch: error: worker \d exited with code 1; stopping the job", text), text[-2000:]
    assert ended - failed[0][0] < 30


@pytest.mark.slow
def test_a_preempted_dist_job_resumes_to_where_an_uninterrupted_one_ends(tmp_path):
    """SIGTERM to the launcher mid-epoch: every worker stops after the same batch, rank 0 writes
    its mid-epoch checkpoint, the servers stop after that; --resume continues the job, which
    ends with the parameters of an uninterrupted job."""
    args = BASE + ["--synthetic-batches", "8", "--num-epochs", "2", "--log-interval", "1"]
    args += ["--kvstore", "dist_sync"]
    whole = tmp_path / "whole"
    out = subprocess.run(
        LAUNCH + TRAIN + args + ["--save-dir", str(whole)], capture_output=True, text=True, env=DIST_ENV
    )
    assert out.returncode == 0, out.stderr[-3000:]

    save = tmp_path / "preempted"
    proc = subprocess.Popen(
        LAUNCH + TRAIN + args + ["--save-dir", str(save)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=DIST_ENV,
    )
    assert _interrupt(proc, save, ("batches", 11), signal.SIGTERM)  # in epoch 2
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "asked 2 workers to checkpoint" in err
    mid = checkpoint.find_resume(str(save))
    assert mid is not None and mid.batch > 0, err[-3000:]

    out = subprocess.run(
        LAUNCH + TRAIN + args + ["--save-dir", str(save), "--resume"],
        capture_output=True,
        text=True,
        env=DIST_ENV,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"batch {mid.batch}" in out.stderr
    a = mx.nd.load(checkpoint.stem(str(whole), MODEL, 2) + ".params")
    b = mx.nd.load(checkpoint.stem(str(save), MODEL, 2) + ".params")
    differ = [name for name in a if not np.array_equal(a[name].asnumpy(), b[name].asnumpy())]
    assert not differ, differ[:5]
    assert metrics_epochs(save) == [1, 2]


# --- a damaged image never costs a silent crash ---------------------------------------------------


@pytest.fixture()
def damaged_val(digits, tmp_path):
    """A copy of the digits validation records whose record 5 has a zero image height: MXNet's
    evaluation pipeline dies of SIGFPE on it (tests/test_verify.py)."""
    from test_verify import copy_set, damage

    rec, idx = copy_set(digits["val"][1][: -len(".rec")], tmp_path / "val")
    damage(rec, idx, 5, "height")
    return rec, idx


@pytest.mark.slow
def test_a_decoder_crash_in_validation_names_the_records_and_keeps_the_epoch(digits, damaged_val, tmp_path):
    rec, idx = damaged_val
    save = tmp_path / "run"
    args = TINY + digits["train"] + ["--rec-val", rec, "--rec-val-idx", idx]
    args += ["--batch-size", "64", "--num-epochs", "1", "--save-dir", str(save)]
    out = run(args)
    assert out.returncode == -signal.SIGFPE, out.stderr[-3000:]
    assert "Fatal Python error" in out.stderr  # the Python stack of the crash
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("train_imagenet.py: error: the process was killed by"), last
    assert f"while reading {digits['train'][1]} or {rec}" in last and "--deep" in last
    assert checkpoint.find_resume(str(save)).meta["val_pending"] is True  # the epoch is kept

    check = subprocess.run(
        [sys.executable, "-m", "a2gluon", "check-records", rec, "--deep", "--quiet"],
        capture_output=True,
        text=True,
        env=TEST_ENV,
    )
    assert check.returncode == 1 and "key 5" in check.stdout + check.stderr, check.stdout + check.stderr
    # known now: refused before any work, in one line
    one_line_error(run(args + ["--resume"]), rec)


def test_resume_refuses_data_whose_class_names_differ():
    """Same network, same class count, other class names (another data set): resuming would give
    the labels another meaning, so it is refused in one line naming the first label that differs."""
    from types import SimpleNamespace

    from a2gluon.engine.settings import TrainError
    from a2gluon.engine.trainer import check_resume_fits
    from a2gluon.models import get_model

    net = get_model("resnet26", classes=3)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    saved = {name: p.data() for name, p in net._collect_params_with_prefix().items()}
    flags = {"model": "resnet26"}
    ck = SimpleNamespace(
        meta={"model": "resnet26", "classes": ["cat", "dog", "fox"]}, stem="run/x-0001", batch=0
    )
    check_resume_fits(ck, flags, net, 3, 8, saved, ["cat", "dog", "fox"])  # the same data
    check_resume_fits(ck, flags, net, 3, 8, saved, None)  # data without names (synthetic)
    with pytest.raises(TrainError, match=r"other classes \(label 2: 'fox' -> 'owl'\)"):
        check_resume_fits(ck, flags, net, 3, 8, saved, ["cat", "dog", "owl"])


def test_sigterm_while_the_run_is_set_up_is_one_line_and_saves_nothing(tmp_path, monkeypatch, capsys):
    """SIGTERM while the model is built or a checkpoint loaded (before the loop's own handler is
    in place) ended the process without a word."""
    from a2gluon.cli import train as train_cli
    from a2gluon.engine.trainer import Run

    def terminated_while_loading(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises here
        pytest.fail("SIGTERM did not stop the set-up")

    monkeypatch.setattr(Run, "resume", terminated_while_loading)
    code = train_cli.main(BASE + ["--num-epochs", "1", "--save-dir", str(tmp_path / "run")])
    assert code == 128 + signal.SIGTERM
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "a2gluon train: stopped by SIGTERM before training started; nothing saved"
    assert not checkpoint.list_checkpoints(str(tmp_path / "run"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


@pytest.mark.parametrize("where", ["__del__", "weakref callback"])
@pytest.mark.parametrize("steps", [100, 0])
def test_a_signal_that_comes_while_python_ignores_exceptions_still_stops_the_job(where, steps):
    """SIGTERM handled while an MXNet array's ``__del__`` ran raised Terminated there, Python
    printed "Exception ignored" and eval-video scored on to exit 0 (a CI run).  Now the job stops
    a moment after the ``__del__`` returns, or when the block ends if that comes first."""
    import weakref

    from a2gluon.signals import Terminated, stop_on_signals

    class Freed:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before this returns
            sum(range(1000))

    def callback(_):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))

    class Referent:
        pass

    went_on, hook = [], sys.unraisablehook
    with pytest.raises(Terminated) as stop:
        with stop_on_signals():
            with stop_on_signals():  # nested, as fit() within the CLI's block: the outer one raises
                if where == "__del__":
                    Freed()
                else:
                    kept = weakref.ref(Referent(), callback)  # noqa: F841 (called as Referent() dies)
            for step in range(steps):
                went_on.append(step)
                time.sleep(0.01)
    assert stop.value.signum == signal.SIGTERM
    assert len(went_on) < steps / 2 or steps == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert sys.unraisablehook is hook


def test_a_second_signal_during_a_del_still_stops_training_at_once():
    """The trainer's flag: the first signal asks for a save and stop, the second stops at once,
    also when it comes while a ``__del__`` runs."""
    from a2gluon.engine.trainer import StopFlag

    class Freed:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))

    went_on = []
    with pytest.raises(KeyboardInterrupt):
        with StopFlag() as flag:
            os.kill(os.getpid(), signal.SIGTERM)
            assert flag.name == "SIGTERM"
            Freed()
            for step in range(100):
                went_on.append(step)
                time.sleep(0.01)
    assert len(went_on) < 50
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("entry", [["-m", "a2gluon", "eval"], ["eval_imagenet.py"]])
def test_a_signal_while_a_command_starts_is_one_line(tmp_path, signum, entry):
    """SIGTERM while MXNet was imported (the first seconds) killed the command without a word,
    Ctrl-C printed an import traceback."""
    # The command waits in its imports (a module first in sys.path) until the signal has come.
    (tmp_path / "sitecustomize.py").write_text(
        "import builtins, os, time\n"
        "real = builtins.__import__\n"
        "def slow(name, *args, **kwargs):\n"
        "    if name == 'mxnet' and not os.path.exists(os.environ['READY']):\n"
        "        open(os.environ['READY'], 'w').close()\n"
        "        time.sleep(30)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = slow\n"
    )
    ready = tmp_path / "ready"
    env = dict(TEST_ENV, PYTHONPATH=f"{tmp_path}:{ROOT}", READY=str(ready))
    proc = subprocess.Popen(
        [sys.executable, *entry, "--help"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    prog = "a2gluon eval" if entry[0] == "-m" else "eval_imagenet.py"
    assert proc.returncode == 128 + signum, err
    assert err.strip() == f"{prog}: stopped by {signal.Signals(signum).name} while starting; nothing done"
