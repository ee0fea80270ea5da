"""Video data: the decoder's exact frames, the motion set, the layouts, clip sampling, the video
source (determinism, shards, views, workers that die or hang) and a2gluon pack-video."""

import json
import os
import time

import av
import numpy as np
import pytest

from a2gluon.cli import main as cli_main
from a2gluon.data import video_decode
from a2gluon.data.layout import DataError, read_class_list
from a2gluon.data.motion import CLASSES, camera_path, write_motion_set
from a2gluon.data.pipeline import MEAN_RGB, STD_RGB
from a2gluon.data.video import (
    VideoSource,
    WorkerPool,
    centre_view,
    crop_offsets,
    iter_video_views,
    read_video_set,
    train_indices,
    video_views,
    view_indices,
)

BITS = 8


def index_video(path, frames=60, width=128, height=96):
    """A video whose frame i shows i in binary (8 black/white blocks) over a moving gradient."""
    block = width // BITS
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    out = []
    for i in range(frames):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = np.roll(ramp, 3 * i)[None, :, None].astype(np.uint8)
        for b in range(BITS):
            frame[:block, b * block : (b + 1) * block] = 255 if (i >> b) & 1 else 0
        out.append(frame)
    return video_decode.write_video(path, out, fps=25)


def spelled(frame):
    block = frame.shape[1] // BITS
    inner = slice(block // 4, block - block // 4)
    bits = [frame[inner, b * block : (b + 1) * block][:, inner].mean() > 127 for b in range(BITS)]
    return sum(1 << b for b, bit in enumerate(bits) if bit)


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    """The motion set, small: 5 classes x (3 train + 2 val photographs), 24 frames of 64 x 48."""
    root = tmp_path_factory.mktemp("motion")
    start = time.perf_counter()
    sets = {
        layout: write_motion_set(
            root / layout, train_photos=3, val_photos=2, frames=24, width=64, height=48, layout=layout
        )
        for layout in ("folders", "ucf101", "kinetics")
    }
    sets["seconds"] = time.perf_counter() - start
    return sets


# The decoder --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".mkv"])
def test_decoder_gives_exactly_the_requested_frames(tmp_path, suffix):
    path = index_video(tmp_path / f"index{suffix}")
    info = video_decode.probe(path)
    assert (info.num_frames, info.width, info.height, info.fps) == (60, 128, 96, 25.0)
    rng = np.random.RandomState(0)
    requests = [[0, 1, 2], [59], [40, 10, 40, 5], list(range(20, 52, 2))]
    requests += [sorted(rng.choice(60, 8, replace=False).tolist()) for _ in range(6)]
    for indices in requests:  # first index >= 8 seeks; the others decode from the start
        frames = video_decode.read_frames(path, indices)
        assert frames.shape == (len(indices), 96, 128, 3) and frames.dtype == np.uint8
        assert [spelled(f) for f in frames] == indices
    small = video_decode.read_frames(path, [30, 70], short_side=48)  # 70 is past the end: the last frame
    assert small.shape == (2, 48, 64, 3)
    assert spelled(video_decode.read_frames(path, [70])[0]) == 59


def test_encoders_are_the_codecs_users_have(tmp_path):
    for suffix, codec in ((".avi", "mpeg4"), (".mp4", "h264")):
        path = index_video(tmp_path / f"v{suffix}", frames=5)
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name == codec


def test_decoder_errors_are_one_line(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.avi").write_bytes(b"this is not a video" * 10)
    for name, words in (
        ("missing.mp4", "no such video"),
        ("empty.mp4", "empty file"),
        ("junk.avi", "not a readable"),
    ):
        with pytest.raises(DataError) as err:
            video_decode.read_frames(tmp_path / name, [0])
        assert words in str(err.value) and "\n" not in str(err.value)


# The motion set -----------------------------------------------------------------------------------


def test_motion_set(motion):
    assert motion["seconds"] < 20
    folders = motion["folders"]
    assert folders["train_videos"] == 15 and folders["val_videos"] == 10
    train, val = read_video_set(folders["train"]), read_video_set(folders["val"])
    assert train.classes == sorted(CLASSES) and val.classes == train.classes
    suffixes = {os.path.splitext(p)[1] for p, _ in train.items + val.items}
    assert suffixes == {".avi", ".mp4"}
    photo = lambda path: int(os.path.basename(path).rsplit("_p", 1)[1][:2])  # noqa: E731
    assert {photo(p) for p, _ in train.items} == {0, 1, 2} and {photo(p) for p, _ in val.items} == {3, 4}
    info = video_decode.probe(train.items[0][0])
    assert (info.num_frames, info.width, info.height) == (24, 64, 48)
    again = write_motion_set(folders["root"], train_photos=3, val_photos=2, frames=24, width=64, height=48)
    assert again == folders  # reused, not rewritten


def test_no_single_frame_tells_the_motion():
    """Every class shows windows of the same sizes: the window widths of any frame position
    overlap between all classes, and the classes differ only in how the window moves."""
    rng = np.random.RandomState(0)
    middle = {}
    for motion in CLASSES:
        paths = [camera_path(motion, 16, rng, 96, 72) for _ in range(200)]
        middle[motion] = np.array([ww[8] for _, _, ww in paths])
        cx, cy, ww = paths[0]
        moved = {"x": np.ptp(cx) > 5, "y": np.ptp(cy) > 5, "w": np.ptp(ww) > 5}
        expect = {"pan_up": "y", "pan_down": "y", "pan_sideways": "x", "zoom_in": "w", "zoom_out": "w"}[
            motion
        ]
        assert [k for k, v in moved.items() if v] == [expect]
    low = max(np.percentile(w, 25) for w in middle.values())
    high = min(np.percentile(w, 75) for w in middle.values())
    assert low < high  # the central halves of all classes' window sizes overlap


# Layouts ------------------------------------------------------------------------------------------


def test_ucf101_layout(motion):
    ucf = motion["ucf101"]
    train = read_video_set(ucf["train"], ucf["list_dir"], "ucf101", split=1, subset="train")
    test = read_video_set(
        ucf["train"], ucf["list_dir"], "ucf101", split=1, subset="test", classes=train.classes
    )
    assert train.classes == ["PanDown", "PanSideways", "PanUp", "ZoomIn", "ZoomOut"]  # classInd.txt
    assert len(train) == 15 and len(test) == 10
    for path, label in train.items + test.items:
        assert f"/{train.classes[label]}/v_{train.classes[label]}_g" in path
    assert {p for p, _ in train.items}.isdisjoint(p for p, _ in test.items)
    with pytest.raises(DataError, match="trainlist02.txt does not exist"):
        read_video_set(ucf["train"], ucf["list_dir"], "ucf101", split=2)


def test_kinetics_layout(motion, tmp_path):
    kin = motion["kinetics"]
    train = read_video_set(kin["train"], kin["train_csv"], "kinetics")
    assert train.classes == sorted(CLASSES) and len(train) == 15 and not train.missing
    for path, label in train.items:
        assert os.path.basename(os.path.dirname(path)) == train.classes[label]
    csv = tmp_path / "with_missing.csv"
    text = open(kin["val_csv"]).read() + "zoom_in,notthereXYZ,0,10,val\n"
    csv.write_text(text)
    val = read_video_set(kin["val"], csv, "kinetics", classes=train.classes)
    assert len(val) == 10 and val.missing == ["zoom_in/notthereXYZ"]  # skipped and reported
    csv.write_text(text.replace("zoom_in,notthere", "juggling,notthere"))
    with pytest.raises(DataError, match="class 'juggling' is not one of the training set's 5 classes"):
        read_video_set(kin["val"], csv, "kinetics", classes=train.classes)
    csv.write_text("youtube_id,time_start,time_end,split\nabc,0,10,test\n")
    with pytest.raises(DataError, match="expected the columns label,youtube_id"):
        read_video_set(kin["val"], csv, "kinetics")


def test_gluon_list_and_classes_json(motion, tmp_path):
    root = motion["folders"]["train"]
    folder = read_video_set(root)
    lst = tmp_path / "train.txt"
    rel = [os.path.relpath(p, root) for p, _ in folder.items]
    lst.write_text(
        "".join(f"{os.path.splitext(r)[0]} 24 {label}\n" for r, (_, label) in zip(rel, folder.items))
    )
    listed = read_video_set(root, lst)  # paths without their suffix, as Gluon-CV's lists
    assert [p for p, _ in listed.items] == [p for p, _ in folder.items]
    assert listed.num_frames == [24] * len(folder) and listed.classes == ["0", "1", "2", "3", "4"]
    # one typo'd label (42 for 4) without class names would make 37 classes no video has
    typo = tmp_path / "typo.txt"
    typo.write_text(lst.read_text().replace(" 24 4\n", " 24 42\n", 1))
    with pytest.raises(DataError, match=r"labels go up to 42 but 37 of 0-42 have no video \(e.g. 5, 6, 7"):
        read_video_set(root, typo)
    classes_json = tmp_path / "classes.json"
    from a2gluon.data.video import write_video_classes

    write_video_classes(classes_json, folder.classes)
    assert read_class_list(classes_json) == folder.classes
    assert read_video_set(root, lst).classes == folder.classes  # the classes.json beside the list
    lst.write_text(lst.read_text() + "pan_up/gone 24 2\n")
    with pytest.raises(DataError, match="1 listed videos are missing, e.g. pan_up/gone"):
        read_video_set(root, lst)
    lst.write_text("pan_up/x.mp4 two 2\n")
    with pytest.raises(DataError, match="expected 'path num_frames label'"):
        read_video_set(root, lst)


def test_validation_class_not_in_training(motion, tmp_path):
    val = tmp_path / "val"
    os.makedirs(val / "juggling")
    index_video(val / "juggling" / "a.avi", frames=4)
    with pytest.raises(DataError) as err:
        VideoSource(motion["folders"]["train"], val_data_dir=val, new_length=4, input_size=32, short_side=36)
    assert "class 'juggling' is not one of the training set's 5 classes" in str(err.value)


# Clips --------------------------------------------------------------------------------------------


def test_clip_indices():
    rng = np.random.RandomState(0)
    starts = set()
    for _ in range(50):
        idx = train_indices(100, 8, 4, rng)
        assert np.all(np.diff(idx) == 4) and 0 <= idx[0] and idx[-1] < 100
        starts.add(int(idx[0]))
    assert len(starts) > 20  # random starts over all 72 possible
    short = train_indices(10, 8, 2, rng)  # 15 frames needed, 10 there: loops
    assert np.all(short < 10) and np.all((np.diff(short) - 2) % 10 == 0)
    clips = view_indices(100, 8, 2, 5)
    assert clips.shape == (5, 8) and list(clips[:, 0]) == [8, 25, 43, 60, 77]  # int(8.6 + 17.2 i)
    assert view_indices(100, 8, 2, 1)[0, 0] == clips[2, 0]  # the centre clip: the same start
    assert crop_offsets(60, 100, 50, 3) == [(5, 0), (5, 25), (5, 50)]
    assert crop_offsets(100, 60, 50, 3) == [(0, 5), (25, 5), (50, 5)]


def test_views_and_normalisation(tmp_path):
    path = index_video(tmp_path / "v.mp4", frames=60)
    views = video_views(path, 4, 3, 64, 72, num_clips=3, num_crops=3)
    assert views.shape == (9, 3, 4, 64, 64) and views.dtype == np.float32
    single = video_views(path, 4, 3, 64, 72)
    np.testing.assert_array_equal(views[3 * 1 + 1], single[0])  # centre clip, centre crop
    # clip accuracy's view: the middle clip of an odd count; an even count has none, so the centre
    # clip's centre crop comes after the others (the 10 x 3 protocol's 6th clip starts later)
    assert centre_view(3, 3) == 4 and centre_view(1, 1) == 0 and centre_view(2, 3) == 6
    assert video_views(path, 4, 3, 64, 72, num_clips=3, num_crops=3, centre=True).shape[0] == 9
    even = video_views(path, 4, 3, 64, 72, num_clips=2, num_crops=3, centre=True)
    assert even.shape[0] == 7 and not np.array_equal(even[4], single[0])
    np.testing.assert_array_equal(even[6], single[0])
    np.testing.assert_array_equal(even[:6], video_views(path, 4, 3, 64, 72, num_clips=2, num_crops=3))
    frames = video_decode.read_frames(path, view_indices(60, 4, 3, 3)[0], short_side=72)  # 72 x 96
    pixels = views[0].transpose(1, 2, 3, 0) * np.array(STD_RGB) + np.array(MEAN_RGB)
    np.testing.assert_allclose(pixels, frames[:, 4:68, 0:64], atol=1e-3)  # clip 0, left crop
    assert [spelled(f) for f in frames] == list(view_indices(60, 4, 3, 3)[0])


def test_iter_video_views_skips_bad_videos(tmp_path):
    good = index_video(tmp_path / "good.avi", frames=20)
    (tmp_path / "bad.mp4").write_bytes(b"\0" * 100)
    items = [(str(good), 0), (str(tmp_path / "bad.mp4"), 1), (str(good), 2)]
    it = iter_video_views(items, 4, 1, 32, 48, num_clips=2, num_crops=3)
    got = [(index, label, views.shape) for index, label, views in it]
    assert got == [(0, 0, (6, 3, 4, 32, 32)), (2, 2, (6, 3, 4, 32, 32))]
    assert [p for p, _ in it.skipped] == [str(tmp_path / "bad.mp4")]


# The source ---------------------------------------------------------------------------------------


def batches_of(source, epoch):
    return [(b.data[0].asnumpy(), b.label[0].asnumpy()) for b in source.train(epoch)]


def test_video_source(motion, capsys):
    args = dict(new_length=6, new_step=2, input_size=40, short_side=48, seed=5)
    source = VideoSource(
        motion["folders"]["train"], val_data_dir=motion["folders"]["val"], num_data_workers=0, **args
    )
    assert source.input_shape == (3, 6, 40, 40) and source.num_classes == 5 and source.has_val
    with pytest.raises(DataError, match="--num-classes is 4 but the training data has 5 classes"):
        source.check(4)
    source.check(5)
    assert source.plan(4, 1, 0) == 4  # ceil(15 / 4)
    first = batches_of(source, 0)
    assert len(first) == 4 and first[0][0].shape == (4, 3, 6, 40, 40) and first[0][0].dtype == np.float32
    data = np.concatenate([d for d, _ in first])
    assert abs(data.mean()) < 1.5 and 0.2 < data.std() < 3  # normalised with ImageNet's statistics
    labels = np.concatenate([lab for _, lab in first])
    assert set(labels[:15].tolist()) == set(range(5))
    again = batches_of(source, 0)
    for (d1, l1), (d2, l2) in zip(first, again):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(l1, l2)
    other = batches_of(source, 1)
    assert not np.array_equal(first[0][0], other[0][0])
    # two workers' shards: disjoint, together every video
    source.plan(2, 2, 0)
    shards = [set(source.shard(3, 2, r).tolist()) for r in range(2)]
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(15))
    assert shards[0] != set(source.shard(4, 2, 0).tolist())  # reshuffled every epoch
    # validation: every video once, centre clip, centre crop, the last batch padded
    source.plan(4, 1, 0)
    val = list(source.val())
    assert len(val) == 3 and [b.pad for b in val] == [0, 0, 2]
    path, label = source.val_set.items[9]
    np.testing.assert_array_equal(val[2].data[0].asnumpy()[1], video_views(path, 6, 2, 40, 48)[0])
    assert val[2].label[0].asnumpy()[1] == label


def test_source_same_clips_with_worker_processes(motion):
    """The clips depend on (seed, epoch, position) only, not on the loading processes."""
    args = dict(new_length=4, new_step=3, input_size=32, short_side=40, seed=1)
    sources = [VideoSource(motion["folders"]["train"], num_data_workers=n, **args) for n in (0, 2)]
    results = []
    for source in sources:
        source.check(5)
        source.plan(3, 2, 1)
        results.append(batches_of(source, 2))
        source.close()
    for (d1, l1), (d2, l2) in zip(*results):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(l1, l2)


def test_source_skips_bad_videos_and_rejects_bad_arguments(motion, tmp_path, capsys):
    root = tmp_path / "train"
    for name in ("a", "b"):
        os.makedirs(root / name)
        index_video(root / name / "ok.avi", frames=10, width=64, height=48)
    (root / "b" / "broken.mp4").write_bytes(b"garbage" * 20)
    (root / "a" / "empty.avi").write_bytes(b"")
    source = VideoSource(root, new_length=4, input_size=32, short_side=40, num_data_workers=0)
    source.check(2)
    assert source.num_images == 2 and len(source.skipped) == 2
    assert "skipped training video" in capsys.readouterr().err
    source.plan(2)
    ((data, label),) = batches_of(source, 0)
    assert data.shape == (2, 3, 4, 32, 32) and sorted(label.tolist()) == [0.0, 1.0]
    for kwargs, message in (
        (dict(new_length=0), "--new-length must be at least 1, got 0"),
        (dict(input_size=64, short_side=48), "--short-side 48 is smaller than --input-size 64"),
        (dict(dataset="hmdb"), "--dataset must be one of folder, ucf101, kinetics"),
    ):
        full = {**dict(new_length=4, input_size=32, short_side=40), **kwargs}
        with pytest.raises(DataError, match=message):
            VideoSource(root, **full)
    with pytest.raises(DataError, match="no such directory"):
        VideoSource(tmp_path / "nowhere")
    (root / "a" / "ok.avi").write_bytes(b"")
    (root / "b" / "ok.avi").write_bytes(b"x")
    with pytest.raises(DataError, match="none of the 4 training videos"):
        VideoSource(root, new_length=4, input_size=32, short_side=40, num_data_workers=0).check(2)


def test_dead_or_hung_workers_do_not_hang(tmp_path):
    pool = WorkerPool(1, timeout=3)
    good = str(index_video(tmp_path / "g.avi", frames=4))
    tasks = [("probe", good, None, None), ("call", "crash", None, (os._exit, 3)), ("probe", good, None, None)]
    results = list(pool.map(tasks))
    assert results[0] == ("ok", 4) and results[2] == ("ok", 4)
    assert results[1][0] == "error" and "the decoding process died" in results[1][1]
    start = time.perf_counter()
    with pytest.raises(DataError, match="has not finished sleepy in 3 s"):
        list(pool.map([("call", "sleepy", None, (time.sleep, 60))]))
    assert time.perf_counter() - start < 20
    pool.close()


# pack-video ---------------------------------------------------------------------------------------


def test_pack_video(motion, tmp_path, capsys):
    root = tmp_path / "root"
    train = read_video_set(motion["folders"]["train"])
    for path, label in train.items[:6]:
        os.makedirs(root / train.classes[label], exist_ok=True)
        os.link(path, root / train.classes[label] / os.path.basename(path))
    (root / "zoom_out").mkdir()
    (root / "zoom_out" / "broken.avi").write_bytes(b"not a video at all" * 10)
    out = tmp_path / "packed"
    os.makedirs(tmp_path / "packed.tmp-999999")  # left by a killed run
    assert cli_main(["pack-video", str(root), str(out), "--short-side", "32", "--num-workers", "0"]) == 0
    captured = capsys.readouterr()
    assert "packed 6 videos (144 frames) of 3 classes" in captured.out
    assert "video/s" in captured.err  # the progress bar
    assert "skipped 1 videos" in captured.err and "zoom_out/broken.avi" in captured.err
    assert not (tmp_path / "packed.tmp-999999").exists()
    lines = (out / "list.txt").read_text().splitlines()
    assert len(lines) == 6 and all(line.endswith((" 24 0", " 24 1", " 24 2")) for line in lines)
    meta = json.loads((out / "classes.json").read_text())
    assert meta["classes"] == ["pan_down", "pan_sideways", "zoom_out"] and meta["skipped"] == [
        "zoom_out/broken.avi"
    ]
    packed = read_video_set(out, out / "list.txt")
    assert packed.classes == meta["classes"] and packed.num_frames == [24] * 6
    info = video_decode.probe(packed.items[0][0])
    assert (info.height, info.width, info.num_frames) == (32, 42, 24)  # 64 x 48 -> 42 x 32 (even)
    # refuses to overwrite; a failing run leaves the old output whole and no temporary folder
    assert cli_main(["pack-video", str(root), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"a2gluon pack-video: error: {out} exists; use --force to replace it"
    bad_root = tmp_path / "bad"
    os.makedirs(bad_root / "x")
    (bad_root / "x" / "a.mp4").write_bytes(b"")
    assert cli_main(["pack-video", str(bad_root), str(out), "--force", "--quiet", "--num-workers", "0"]) == 2
    assert "none of the 1 videos could be packed" in capsys.readouterr().err
    assert (out / "list.txt").read_text().splitlines() == lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "packed", "root"]
    # --force replaces it, with worker processes
    assert cli_main(["pack-video", str(root), str(out), "--force", "--quiet", "--format", "avi",
                     "--num-workers", "2"]) == 0  # fmt: skip
    assert (out / "list.txt").read_text().splitlines()[0].split()[0].endswith(".avi")
    for argv, message in (
        ([str(tmp_path / "nowhere"), str(tmp_path / "o")], "no such directory"),
        ([str(root), str(tmp_path / "o"), "--short-side", "0"], "--short-side must be a positive integer"),
        ([str(root), str(tmp_path / "o"), "--dataset", "ucf101"], "needs the ucfTrainTestlist folder"),
    ):
        with pytest.raises(SystemExit) if "--short-side" in argv else _nothing():
            code = cli_main(["pack-video", *argv])
            assert code == 2
        assert message in capsys.readouterr().err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
