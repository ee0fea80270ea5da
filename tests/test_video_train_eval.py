"""train-video, eval-video, predict and export on real video files: the motion set (camera motion
over real photographs, a2gluon.data.motion; the class is the motion, no single frame tells it),
training on photographs 0-3 and scoring on the videos of photographs 4-6, which training never
saw.  Plus the iteration schedules, the video recipes' --dry-run, and the bad-input one-liners."""

import json
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
import yaml
from conftest import ROOT, TEST_ENV, TRAIN_SCRIPT

from a2gluon.engine.schedule import Schedule, iteration_plan

TRAIN_VIDEO = str(Path(ROOT, "train_video.py"))
EVAL_VIDEO = str(Path(ROOT, "eval_video.py"))
A2GLUON = [sys.executable, "-m", "a2gluon"]
VIDEO_CONFIGS = sorted(Path(ROOT, "configs").glob("*_3d_*.yaml"))
# The set: 4 training photographs x 64 videos x 5 classes (1,280 videos, each its own view of its
# photograph: many scenes, each seen about 5 times), 3 held-out photographs x 16 videos x 5 classes.
TRAIN_VIDEOS_PER_PHOTO, VAL_VIDEOS_PER_PHOTO = 64, 16
VAL_VIDEOS = 3 * VAL_VIDEOS_PER_PHOTO * 5
BATCH = 8
STEPS_PER_EPOCH = 4 * TRAIN_VIDEOS_PER_PHOTO * 5 // BATCH
# The training recipe (measured against others: 8-frame clips, 3 frames apart, batch 16, lr 0.002-0.02,
# 320 videos): 4-frame clips 2 frames apart at 32 x 32 (from a shorter side of 37), batch 8, lr 0.005
# with a half-epoch warm-up then cosine, zero-initialised residual gammas, no weight decay on
# BatchNorm and biases; 1,280 steps.  It takes 300-450 steps before the motion is learned at all.
EPOCHS = 8


def recipe(epochs=EPOCHS):
    args = ["--new-length", "4", "--new-step", "2", "--input-size", "32", "--batch-size", str(BATCH)]
    args += ["--num-epochs", str(epochs), "--lr", "0.005", "--lr-mode", "cosine", "--warmup-epochs", "0.5"]
    args += ["--last-gamma", "--no-wd", "--val-interval", str(EPOCHS), "--num-data-workers", "1"]
    return args + ["--log-interval", "20"]


EVAL_VIEWS = ["--num-clips", "5", "--num-crops", "1", "--num-data-workers", "1", "--no-progress"]


def run(cmd, timeout=600):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=TEST_ENV)


def one_line_error(out, *words):
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert all(w in last for w in words), last
    return last


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    from a2gluon.data.motion import write_motion_set

    root = tmp_path_factory.mktemp("motion")
    return write_motion_set(
        root,
        train_photos=4,
        val_photos=3,
        videos_per_photo=TRAIN_VIDEOS_PER_PHOTO,
        val_videos_per_photo=VAL_VIDEOS_PER_PHOTO,
        width=64,
        height=48,
    )


@pytest.fixture(scope="module")
def trained(motion, tmp_path_factory):
    """a2_resnet26_3d trained once for the module: (save_dir, completed process)."""
    save = tmp_path_factory.mktemp("video_run") / "run"
    cmd = [sys.executable, TRAIN_VIDEO, "--model", "a2_resnet26_3d", "--data-dir", motion["train"]]
    cmd += ["--val-data-dir", motion["val"], "--save-dir", str(save)] + recipe()
    out = run(cmd)
    assert out.returncode == 0, out.stderr[-3000:]
    return save, out


@pytest.fixture(scope="module")
def scored(trained, motion, tmp_path_factory):
    save, _ = trained
    out_dir = tmp_path_factory.mktemp("video_eval")
    best = str(save / "video-a2_resnet26_3d-best.params")
    cmd = [sys.executable, EVAL_VIDEO, "--params", best, "--data-dir", motion["val"]] + EVAL_VIEWS
    cmd += ["--json-out", str(out_dir / "eval.json"), "--per-class", str(out_dir / "per_class.csv")]
    out = run(cmd)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((out_dir / "eval.json").read_text()), out_dir, out, best


def test_a2_resnet26_3d_learns_the_motion_of_unseen_photographs(trained, scored):
    result, _, out, _ = scored
    for key in (
        "clip_top1",
        "clip_top5",
        "video_top1",
        "video_top5",
        "videos",
        "num_clips",
        "num_crops",
        "model",
    ):
        assert key in result, key
    assert result["model"] == "a2_resnet26_3d" and result["videos"] == VAL_VIDEOS
    assert (result["num_clips"], result["num_crops"], result["new_length"], result["input_size"]) == (
        5,
        1,
        4,
        32,
    )
    # 5 classes: chance is 0.2; held-out videos of photographs training never saw
    assert result["video_top1"] >= 0.5, result
    # five clips are not worse than the centre one (measured, seeds 0-2 of this recipe: video - clip
    # top-1 +0.054 to +0.059 for a2_resnet26_3d, +0.075 to +0.104 for resnet26_3d; training is
    # bit-reproducible on one machine, other CPUs give other runs)
    assert result["video_top1"] >= result["clip_top1"], result
    assert "videos/s" in out.stdout and "video top-1" in out.stdout
    # the training run: metrics, curves and the clip recorded for evaluation
    save, _ = trained
    meta = json.loads((save / "video-a2_resnet26_3d-best.json").read_text())
    assert meta["input_shape"] == [3, 4, 32, 32] and meta["args"]["new_step"] == 2
    assert (save / "curves.png").exists() and len((save / "metrics.jsonl").read_text().splitlines()) == EPOCHS


def test_per_class_csv(scored):
    result, out_dir, _, _ = scored
    rows = (out_dir / "per_class.csv").read_text().splitlines()
    assert rows[0] == "label,class,videos,clip_top1,clip_top5,video_top1,video_top5"
    assert len(rows) == 6 and sum(int(r.split(",")[2]) for r in rows[1:]) == VAL_VIDEOS
    assert {r.split(",")[1] for r in rows[1:]} == {
        "pan_up",
        "pan_down",
        "pan_sideways",
        "zoom_in",
        "zoom_out",
    }


def test_predict_export_and_the_exported_model(scored, motion, tmp_path):
    result, _, _, best = scored
    video = next(Path(motion["val"], "zoom_in").iterdir())
    out = run(
        A2GLUON + ["predict", "--params", best, str(video), "--json", "--num-clips", "5", "--num-crops", "1"]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (pred,) = json.loads(out.stdout)
    assert pred["video"] == str(video) and pred["views"] == 5 and len(pred["predictions"]) == 5
    assert abs(sum(p["probability"] for p in pred["predictions"]) - 1) < 1e-4

    prefix = tmp_path / "motion"
    out = run(A2GLUON + ["export", "--params", best, "--out", str(prefix), "--onnx"])
    assert out.returncode == 0, out.stderr[-2000:]
    meta = json.loads((tmp_path / "motion.json").read_text())
    assert meta["input_shape"] == [3, 4, 32, 32] and meta["args"]["new_step"] == 2  # the trained clip
    # the exported symbol scores as the checkpoint does; ONNX Runtime gives the same logits
    cmd = [sys.executable, EVAL_VIDEO, "--symbol", str(prefix), "--data-dir", motion["val"]] + EVAL_VIEWS
    out = run(cmd + ["--json-out", str(tmp_path / "sym.json")])
    assert out.returncode == 0, out.stderr[-2000:]
    exported = json.loads((tmp_path / "sym.json").read_text())
    assert exported["video_top1"] == pytest.approx(result["video_top1"], abs=1 / VAL_VIDEOS + 1e-6)
    ort = pytest.importorskip("onnxruntime")
    from a2gluon.data.video import video_views
    from a2gluon.deploy import load_symbol_model

    clip = video_views(str(video), 4, 2, 32, 37, 1, 1)
    session = ort.InferenceSession(str(prefix) + ".onnx", providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: clip})[0]
    want = load_symbol_model(str(prefix)).net(mx.nd.array(clip)).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_resume_continues_the_run(trained, motion):
    save, _ = trained
    cmd = [sys.executable, TRAIN_VIDEO, "--model", "a2_resnet26_3d", "--data-dir", motion["train"]]
    # one more epoch, cut after 4 batches (--num-iters), so that the test stays short
    cmd += ["--save-dir", str(save), "--resume", "--num-iters", str(EPOCHS * STEPS_PER_EPOCH + 4)]
    out = run(cmd + recipe())
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resumed from video-a2_resnet26_3d-{EPOCHS:04d}" in out.stderr
    assert f"Epoch[{EPOCHS + 1}/{EPOCHS + 1}] Batch[4/{STEPS_PER_EPOCH}]" in out.stderr
    assert len((save / "metrics.jsonl").read_text().splitlines()) == EPOCHS + 1


def test_bad_input_is_one_line(motion, trained, tmp_path):
    data = ["--data-dir", motion["train"], "--num-data-workers", "1"]
    train = [sys.executable, TRAIN_VIDEO] + data
    one_line_error(run(train + ["--model", "a2_resnet26", "--dry-run"]), "a2_resnet26 is an image network")
    one_line_error(run(train + ["--new-length", "1", "--dry-run"]), "downsamples time by 2", "--new-length 2")
    one_line_error(run(train + ["--input-size", "8", "--dry-run"]), "3x16x8x8", "--input-size 32")
    one_line_error(
        run(train + ["--pretrained", str(tmp_path / "none.params"), "--save-dir", str(tmp_path / "r")]),
        "does not exist",
    )
    missing = [
        sys.executable,
        TRAIN_VIDEO,
        "--data-dir",
        str(tmp_path / "nowhere"),
        "--save-dir",
        str(tmp_path / "s"),
    ]
    assert "Traceback" not in run(missing).stderr and run(missing).returncode == 2
    save, _ = trained
    best = str(save / "video-a2_resnet26_3d-best.params")
    image = next(Path(ROOT, "tests").glob("*.py"))  # not a video
    one_line_error(run(A2GLUON + ["predict", "--params", best, str(image)]), str(image))
    evaluate = [sys.executable, EVAL_VIDEO, "--params", best, "--data-dir", str(tmp_path / "nowhere")]
    one_line_error(run(evaluate), "nowhere")


# --- iteration schedules and the recipes -------------------------------------------------------------


def test_iteration_plan():
    # 37k iterations of 4 accumulated batches over epochs of 1,000 batches: 148 epochs, the decays
    # at batches 80,000 and 120,000
    epochs, total, decay = iteration_plan(
        120, 1000, (30, 60), accumulate=4, num_iters=37000, decay_iters=(20000, 30000)
    )
    assert (epochs, total, decay) == (148, 148000, (80.0, 120.0))
    schedule = Schedule(lr=0.2, num_epochs=total / 1000, iters_per_epoch=1000, decay_epochs=decay)
    assert [schedule(s) for s in (79999, 80000, 119999, 120000)] == pytest.approx([0.2, 0.02, 0.02, 0.002])
    assert iteration_plan(3, 7, (1, 2)) == (3, 21, (1, 2))  # epochs as before


def test_num_iters_ends_the_run_mid_epoch(tmp_path):
    """Images too: 6 iterations of epochs of 4 batches are 2 epochs, the second cut at 2 batches;
    the lr drops after iteration 3."""
    save = tmp_path / "run"
    args = ["--model", "a2_resnet26", "--synthetic", "--synthetic-batches", "4", "--input-size", "32"]
    args += ["--batch-size", "2", "--num-classes", "4", "--num-iters", "6", "--lr-decay-iters", "3"]
    args += ["--lr", "0.1", "--log-interval", "1", "--num-data-workers", "1", "--save-dir", str(save)]
    out = run([sys.executable, TRAIN_SCRIPT] + args)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (save / "metrics.jsonl").read_text().splitlines()]
    assert [r["steps"] for r in records] == [4, 6] and records[-1]["lr"] == pytest.approx(0.01)
    assert "Epoch[2/2] Batch[2/4]" in out.stderr and "Batch[3/4]" not in out.stderr.split("Epoch[2/2]", 1)[1]


@pytest.mark.parametrize("path", VIDEO_CONFIGS, ids=lambda p: p.stem)
def test_every_video_recipe_dry_runs(path):
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert len(header) >= 8 and "GPU" in " ".join(header) and "Our choices" in " ".join(header)
    out = run([sys.executable, TRAIN_VIDEO, "--config", str(path), "--num-gpus", "8", "--dry-run"])
    assert out.returncode == 0, out.stderr[-2000:]
    plan = json.loads(out.stdout)
    recipe = yaml.safe_load(path.read_text())
    assert plan["model"] == recipe["model"] and plan["config"] == str(path)
    assert plan["global_batch"] == recipe["global-batch"] and plan["lr"] == recipe["lr"]
    assert plan["input_shape"] == [3, recipe["new-length"], recipe["input-size"], recipe["input-size"]]
    assert plan["global_batch"] == plan["per_device_batch"] * 8 * plan["accumulate"]


def test_the_paper_video_recipes():
    plans = {}
    for path in VIDEO_CONFIGS:
        out = run([sys.executable, TRAIN_VIDEO, "--config", str(path), "--num-gpus", "8", "--dry-run"])
        plans[path.stem] = json.loads(out.stdout)
    ablation = plans["a2_resnet26_3d_kinetics_ablation"]
    assert (ablation["num_iters"], ablation["lr_milestones"], ablation["lr_milestones_in"]) == (
        37000,
        [20000, 30000],
        "iterations",
    )
    kinetics = plans["a2_resnet50_3d_kinetics"]
    assert kinetics["num_iters"] == 32000 and kinetics["new_step"] == 8 and "pretrained_2d" in kinetics
    ucf = plans["a2_resnet50_3d_ucf101"]
    assert ucf["global_batch"] == 104 and ucf["lr_milestones"] == [15, 25, 35] and "pretrained" in ucf
