"""Bad input to the video commands (issue 11, section 3): one line and a non-zero exit before work
starts, or, for one bad file among many, skipped, counted and reported; never a traceback, a hang,
a worker process left behind or a silent wrong result."""

import json
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from a2gluon.cli import eval_video, predict, train_video
from a2gluon.data import DataError
from a2gluon.data.motion import write_motion_set
from a2gluon.data.video import VideoSet, VideoSource, WorkerPool, check_clip_length
from a2gluon.deploy.export import time_stride
from a2gluon.models import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
CLIP = ["--new-length", "4", "--new-step", "2", "--input-size", "32", "--short-side", "36"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The motion set (5 classes, 16-frame videos at 64 x 48) with a damaged copy of its training
    folders (a 0-byte .mp4, an .mp4 cut in half, a text file named .avi, a 1-frame video) and an
    untrained a2_resnet26_3d's params for its 5 classes."""
    root = tmp_path_factory.mktemp("video_bad")
    made = write_motion_set(root / "motion", train_photos=2, val_photos=1, frames=16, width=64, height=48)
    bad = root / "bad"
    subprocess.run(["cp", "-r", made["train"], str(bad)], check=True)
    good = sorted((bad / "pan_up").glob("*.mp4"))[0].read_bytes()
    (bad / "pan_up" / "cut.mp4").write_bytes(good[: len(good) // 2])
    (bad / "pan_down" / "empty.mp4").write_bytes(b"")
    (bad / "zoom_in" / "text.avi").write_text("not a video\n")
    one = sorted((bad / "zoom_out").glob("*.avi"))[0]
    from a2gluon.data.video_decode import read_frames, write_video

    write_video(bad / "zoom_out" / "one.avi", read_frames(one, [0]))
    net = get_model("a2_resnet26_3d", classes=5)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 4, 32, 32)))
    params = root / "video.params"
    net.save_parameters(str(params))
    image = get_model("a2_resnet26", classes=5)
    image.initialize()
    image(mx.nd.zeros((1, 3, 32, 32)))
    image.save_parameters(str(root / "image.params"))
    return dict(made, bad=str(bad), params=str(params), image_params=str(root / "image.params"), root=root)


def one_line(capsys, code, expected, *, status=2):
    """`code` (an exit status) is `status` and stderr's last line names `expected`, no traceback."""
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err
    assert expected in err.strip().splitlines()[-1], err


def exits(capsys, main, argv, expected):
    try:
        code = main(argv)
    except SystemExit as stop:  # parser.error
        code = stop.code
    one_line(capsys, code, expected)


# --- the loading processes --------------------------------------------------------------------------


def test_a_worker_killed_between_results_does_not_end_the_job(data):
    """A data worker killed (kill -9, the OOM killer) while the pool is idle broke the next submit
    ("A child process terminated abruptly, the process pool is not usable anymore") and ended
    training; now the tasks run again in fresh processes."""
    videos = sorted(str(p) for p in (data["root"] / "motion" / "train").rglob("*.avi"))[:4]
    pool = WorkerPool(2, timeout=60)
    results = pool.map(("probe", path, None, None) for path in videos * 3)
    assert next(results) == ("ok", 16)
    executor = pool._executor
    victim = next(iter(executor._processes.values()))
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    deadline = time.monotonic() + 10
    while not executor._broken and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(results) == [("ok", 16)] * (len(videos) * 3 - 1)
    pool.close()


ORPHAN = """
import os, sys
from a2gluon.data.video import WorkerPool
pool = WorkerPool(2)
print(list(pool.map([("probe", sys.argv[1], None, None)] * 4)), flush=True)
print(" ".join(str(p.pid) for p in pool._executor._processes.values()), flush=True)
os.kill(os.getpid(), 9)
"""


def test_workers_end_when_their_parent_is_killed(data):
    """SIGKILL (or an unhandled SIGTERM) of the process that started a pool left its workers and
    the forkserver running for ever; now they end within seconds."""
    video = next((data["root"] / "motion" / "train").rglob("*.avi"))
    out = subprocess.run([sys.executable, "-c", ORPHAN, str(video)], capture_output=True, text=True, env=ENV)
    assert out.returncode == -signal.SIGKILL, out.stderr
    pids = [int(p) for p in out.stdout.splitlines()[1].split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 15
    while (
        any(os.path.exists(f"/proc/{p}") and _state(p) != "Z" for p in pids) and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}") and _state(p) != "Z"]


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _terminate(cmd, ready, tmp_path):
    """Start `cmd`, wait until ready(process, descendants) holds, SIGTERM it: (exit status,
    stderr, seconds it took to end, its descendants that are still alive 5 s later)."""
    err_file = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True, env=ENV, cwd=ROOT)
    deadline = time.monotonic() + 120
    seen = []
    while time.monotonic() < deadline and proc.poll() is None:
        seen = _descendants(proc.pid)
        if ready(proc, seen):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the command ended before it could be stopped"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("SIGTERM did not end the command within 60 s")
    took = time.monotonic() - start
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [p for p in seen if _state(p) not in ("gone", "Z")]:
        time.sleep(0.2)
    err_file.seek(0)
    return code, err_file.read(), took, [p for p in seen if _state(p) not in ("gone", "Z")]


def _many(data, tmp_path, copies):
    """A class-folder set of `copies` links to each training video (slow to get through)."""
    many = tmp_path / "many"
    for path in (data["root"] / "motion" / "train").rglob("*.*"):
        (many / path.parent.name).mkdir(parents=True, exist_ok=True)
        for i in range(copies):
            os.symlink(path, many / path.parent.name / f"{i}_{path.name}")
    return many


def test_sigterm_while_train_video_checks_the_data(data, tmp_path):
    """SIGTERM while the videos are probed (before the trainer's own handler is in place) killed
    the process without a word and left the workers and the forkserver behind."""
    many = _many(data, tmp_path, 400)
    cmd = [sys.executable, "-m", "a2gluon", "train-video", "--model", "a2_resnet26_3d", *CLIP]
    cmd += ["--data-dir", str(many), "--save-dir", str(tmp_path / "run"), "--num-data-workers", "2"]
    code, err, took, left = _terminate(cmd, lambda proc, seen: len(seen) >= 3, tmp_path)
    assert code == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1].endswith("stopped by SIGTERM before training started; nothing saved")
    assert "Traceback" not in err and took < 20 and not left


def test_sigterm_during_eval_video(data, tmp_path):
    """SIGTERM while eval-video scores: it ended without a word and left its workers behind."""
    many = _many(data, tmp_path, 30)
    cmd = [sys.executable, "-m", "a2gluon", "eval-video", "--model", "a2_resnet26_3d", *CLIP]
    cmd += ["--params", data["params"], "--data-dir", str(many), "--num-data-workers", "2"]
    cmd += ["--num-clips", "1", "--num-crops", "1", "--no-progress"]
    code, err, took, left = _terminate(
        cmd, lambda proc, seen: len(seen) >= 3 and time.sleep(1) is None, tmp_path
    )
    assert code == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "a2gluon eval-video: stopped by SIGTERM; nothing written"
    assert took < 20 and not left


# --- train-video --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--new-length", "0"], "--new-length must be a positive integer, got 0"),  # was: 16 frames
        (["--input-size", "0"], "--input-size must be a positive integer, got 0"),  # was: 112
        (["--short-side", "0"], "--short-side must be a positive integer, got 0"),  # was: input / 0.875
        (["--new-length", "1"], "downsamples time by 2"),
        (["--new-length", "4", "--input-size", "64", "--short-side", "36"], "--short-side 36 is smaller"),
        (["--model", "a2_resnet26"], "a2_resnet26 is an image network"),
    ],
)
def test_train_video_refuses_clip_settings(data, capsys, flags, expected):
    base = ["--data-dir", data["train"], "--dry-run", "--new-length", "4", "--input-size", "32"]
    exits(capsys, train_video.main, base + flags, expected)


def test_a_clip_longer_than_every_video(data, capsys):
    """--new-length 100000 decoded 100,000-frame clips until the OOM killer ended the run; a clip
    spanning more than every video (--new-step 100000) trained on looped frames without a word."""
    for length, step in ((100000, 1), (4, 100000)):
        source = VideoSource(
            data["train"], new_length=length, new_step=step, input_size=32, short_side=36, num_data_workers=0
        )
        with pytest.raises(DataError, match=r"more than every training video has \(the longest has 16\)"):
            source.check(5)
    videos = VideoSet([("a", 0), ("b", 0), ("c", 1)], ["x", "y"], [1, 16, 20])
    check_clip_length(videos, 4, 2, "training")
    assert "training data: 1 of 3 videos are shorter than one clip (7 frames)" in capsys.readouterr().err


def test_train_video_skips_bad_videos_and_checks_lists(data, tmp_path, capsys):
    source = VideoSource(
        data["bad"], new_length=4, new_step=2, input_size=32, short_side=36, num_data_workers=1
    )
    source.check(5)
    source.close()
    err = capsys.readouterr().err
    assert sorted(os.path.basename(p) for p, _ in source.skipped) == ["cut.mp4", "empty.mp4", "text.avi"]
    assert "training data: 3 of 14 videos skipped" in err
    assert (
        "training data: 1 of 11 videos are shorter than one clip (7 frames); their frames are looped" in err
    )
    listed = tmp_path / "list.txt"
    listed.write_text("pan_up/gone.avi 16 0\n")
    base = ["--data-dir", data["train"], *CLIP, "--save-dir", str(tmp_path / "r"), "--num-data-workers", "0"]
    exits(capsys, train_video.main, base + ["--train-list", str(listed)], "1 listed videos are missing")
    other = tmp_path / "val"
    subprocess.run(["cp", "-r", data["val"], str(other)], check=True)
    os.rename(other / "pan_up", other / "spin")
    exits(capsys, train_video.main, base + ["--val-data-dir", str(other)], "class 'spin' is not one of")


# --- eval-video and predict ---------------------------------------------------------------------------


def test_time_stride_of_gluon_and_exported_networks():
    assert time_stride(get_model("a2_resnet26_3d", classes=3)) == 2
    assert time_stride(get_model("resnet50_3d", classes=3)) == 2


def test_clip_accuracy_scores_the_centre_clip_and_video_accuracy_the_protocol_views():
    """With an even --num-clips (the 10 x 3 protocol) no view is the centre clip: clip accuracy
    took the 6th clip's centre crop; now the extra centre view, left out of the video average."""
    from a2gluon.data.video import centre_view

    def views(logits):  # views whose pixel [0, 0, 0, 0, :5] are the logits the "network" returns
        out = np.zeros((len(logits), 3, 2, 8, 8), np.float32)
        out[:, 0, 0, 0, :5] = logits
        return out

    net = lambda x: x[:, 0, 0, 0, :5]  # noqa: E731
    # 2 clips x 1 crop, then the centre clip: label 2 is the centre clip's answer only
    video = views([[4, 0, 0, 0, 0], [0, 4, 0, 0, 0], [0, 0, 9, 0, 0]])
    clip, avg, _ = eval_video.score_videos(net, [(0, 2, video)], [mx.cpu()], 5, 8, centre_view(2, 1), 2)
    assert clip.get()[0] == 1.0 and avg.get()[0] == 0.0
    # an odd count: the middle clip is the centre one, every view is averaged
    video = views([[4, 0, 0, 0, 0], [0, 0, 3, 0, 0], [0, 0, 3, 0, 0]])
    clip, avg, _ = eval_video.score_videos(net, [(0, 2, video)], [mx.cpu()], 5, 8, centre_view(3, 1), 3)
    assert clip.get()[0] == 1.0 and avg.get()[0] == 1.0


def test_eval_video_bad_input(data, tmp_path, capsys):
    base = ["--model", "a2_resnet26_3d", "--params", data["params"], *CLIP, "--no-progress"]
    base += ["--num-clips", "2", "--num-crops", "1", "--num-data-workers", "1"]
    # the network cannot take it: these scored garbage before
    exits(
        capsys,
        eval_video.main,
        base + ["--data-dir", data["val"], "--new-length", "1"],
        "downsamples time by 2",
    )
    small = ["--data-dir", data["val"], "--input-size", "8", "--short-side", "8"]
    exits(capsys, eval_video.main, base + small, "cannot run on input 3x4x8x8")
    exits(
        capsys, eval_video.main, base + ["--data-dir", data["val"], "--new-length", "500"], "longest has 16"
    )
    # an image model, a video model with an image model's params
    image = ["--model", "a2_resnet26", "--params", data["image_params"], "--data-dir", data["val"]]
    exits(capsys, eval_video.main, image, "is an image model")
    swapped = ["--model", "a2_resnet26_3d", "--params", data["image_params"], "--data-dir", data["val"]]
    exits(capsys, eval_video.main, swapped, "does not fit a2_resnet26_3d")
    # bad files among good ones: skipped, counted, reported, scored over the rest
    out = tmp_path / "eval.json"
    assert eval_video.main(base + ["--data-dir", data["bad"], "--json-out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "skipped 3 of 14 videos that do not decode; the accuracy is over the other 11" in err
    result = json.loads(out.read_text())
    assert result["videos"] == 11
    assert sorted(os.path.basename(s["path"]) for s in result["skipped_videos"]) == [
        "cut.mp4",
        "empty.mp4",
        "text.avi",
    ]
    assert all(s["reason"].startswith(s["path"]) for s in result["skipped_videos"])


def test_predict_bad_input(data, capsys):
    bad = data["bad"]
    good = str(next((data["root"] / "motion" / "val").rglob("*.avi")))
    video = ["--model", "a2_resnet26_3d", "--params", data["params"], "--num-clips", "1", "--num-crops", "1"]
    video += ["--input-size", "32"]
    # a bad file after a good one: refused before any video is scored
    exits(
        capsys,
        predict.main,
        video + [good, os.path.join(bad, "pan_down", "empty.mp4")],
        "empty.mp4: empty file",
    )
    exits(capsys, predict.main, video + [os.path.join(bad, "zoom_in", "text.avi")], "not a readable video")
    image = ["--model", "a2_resnet26", "--params", data["image_params"], good]
    exits(capsys, predict.main, image, "is a video but a2_resnet26 is an image model")
    # a video shorter than one clip is looped, and said so
    assert predict.main(video + ["--json", os.path.join(bad, "zoom_out", "one.avi")]) == 0
    captured = capsys.readouterr()
    assert "1 frame(s), shorter than one clip (16); its frames are looped" in captured.err
    assert len(json.loads(captured.out)[0]["predictions"]) == 5


def test_export_of_a_clip_the_network_cannot_take(data, tmp_path, capsys):
    """export --frames 1 wrote a model that could not take its own recorded input, and --frames
    100000 crashed MXNet (SIGSEGV); both are one line before anything is written."""
    from a2gluon.cli import export

    base = ["--model", "a2_resnet26_3d", "--params", data["params"], "--input-size", "32"]
    exits(
        capsys, export.main, base + ["--frames", "1", "--out", str(tmp_path / "a")], "downsamples time by 2"
    )
    exits(capsys, export.main, base + ["--frames", "100000", "--out", str(tmp_path / "b")], "GiB per example")
    assert not list(tmp_path.iterdir())


def test_a_signal_while_a_worker_starts_lets_it_start_and_ends_it(monkeypatch):
    """SIGINT just after a worker process was started, before the executor had recorded it: the
    pool's shutdown did not wait for it, and the forkserver printed a traceback (stress run)."""
    import multiprocessing.process

    from a2gluon.signals import Terminated, stop_on_signals

    started, real_start = [], multiprocessing.process.BaseProcess.start

    def start_then_signal(process):
        real_start(process)
        started.append(process)
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the executor records it

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start_then_signal)
    pool = WorkerPool(1)
    with pytest.raises(Terminated):
        with stop_on_signals():
            try:
                list(pool.map([("call", "x", None, (abs, (-1,)))]))
            finally:
                pool.close()
    assert started
    assert not any(p.is_alive() for p in started), "the pool was closed without waiting for a worker"
