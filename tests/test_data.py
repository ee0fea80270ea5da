"""The data layer: packing, record checks, the record pipelines, the folder loader, digits."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest
from gluoncv.data.transforms.presets.imagenet import transform_eval

from a2gluon.cli.digits import main as digits_main
from a2gluon.cli.pack import main as pack_main
from a2gluon.data import (
    MEAN_RGB,
    STD_RGB,
    DataError,
    SyntheticIter,
    check_records,
    eval_transform,
    folder_val_loader,
    make_digits_imagenet,
    pack,
    part_sizes,
    read_classes,
    train_iter,
    val_iter,
)
from a2gluon.data import pack as pack_module

ROOT = Path(__file__).resolve().parents[1]


def texture(rng, height, width):
    """A smooth random colour texture with some grain: compresses and resizes like a photo."""
    coarse = rng.uniform(0, 255, size=(height // 16 + 2, width // 16 + 2, 3))
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root, counts, size=(48, 64), seed=0):
    """ROOT/<class>/<i>.jpg with counts[class] images of size (height, width)."""
    rng = np.random.RandomState(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            height, width = size if i % 2 == 0 else size[::-1]
            cv2.imwrite(str(root / name / f"{i:03d}.jpg"), texture(rng, height, width))
    return root


def labels_of(it):
    """Labels of the real (unpadded) images of one pass over a record iterator."""
    out = []
    it.reset()
    for batch in it:
        n = batch.data[0].shape[0] - batch.pad
        out.extend(batch.label[0].asnumpy()[:n].astype(int).tolist())
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Three classes of 5, 3 and 4 images (12), packed at --resize 32 with 2 workers."""
    tmp = tmp_path_factory.mktemp("packed")
    folder = make_folder(tmp / "train", {"cat": 5, "dog": 3, "eel": 4})
    summary = pack(folder, tmp / "out" / "train", resize=32, num_workers=2, progress=False)
    return tmp, folder, summary


def test_pack_writes_im2rec_files_readable_by_image_record_iter(packed):
    tmp, folder, summary = packed
    assert summary["images"] == 12 and summary["skipped"] == [] and summary["counts"] == [5, 3, 4]
    assert summary["classes"] == ["cat", "dog", "eel"]
    lines = Path(summary["lst"]).read_text().splitlines()
    assert lines[0] == "0\t0.000000\tcat/000.jpg" and lines[-1] == "11\t2.000000\teel/003.jpg"
    meta = json.loads(Path(summary["classes_json"]).read_text())
    assert meta["classes"] == ["cat", "dog", "eel"] and meta["num_images"] == 12
    assert read_classes(summary["rec"]) == read_classes(tmp / "out" / "train") == meta["classes"]
    assert read_classes(tmp / "nothing.rec") is None

    record = mx.recordio.MXIndexedRecordIO(summary["idx"], summary["rec"], "r")
    header, img = mx.recordio.unpack_img(record.read_idx(1))
    assert header.label == 0 and header.id == 1 and min(img.shape[:2]) == 32  # shorter side
    assert img.shape == (42, 32, 3)  # image 1 is 64 x 48 (H x W): 64 * 32 // 48 = 42
    record.close()

    it = mx.io.ImageRecordIter(
        path_imgrec=summary["rec"], path_imgidx=summary["idx"], data_shape=(3, 32, 32), batch_size=4
    )
    got = [int(v) for batch in it for v in batch.label[0].asnumpy()]
    assert got == [0] * 5 + [1] * 3 + [2] * 4

    # Records do not depend on the number of workers.
    again = pack(folder, tmp / "serial" / "train", resize=32, num_workers=0, progress=False)
    assert Path(again["rec"]).read_bytes() == Path(summary["rec"]).read_bytes()
    assert Path(again["idx"]).read_bytes() == Path(summary["idx"]).read_bytes()


def test_unreadable_images_are_skipped_counted_and_reported(tmp_path, capsys):
    folder = make_folder(tmp_path / "src", {"a": 2, "b": 2})
    (folder / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "b" / "empty.png").write_bytes(b"")
    (folder / "b" / "notes.txt").write_text("not an image")
    assert pack_main([str(folder), str(tmp_path / "out"), "--resize", "0", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "packed 4 images" in out
    assert "skipped 2 images that cannot be packed" in err and "a/broken.jpg" in err and "b/empty.png" in err
    assert "ignored 1 files" in err and "b/notes.txt" in err
    meta = json.loads((tmp_path / "out.classes.json").read_text())
    assert meta["skipped"] == ["a/broken.jpg", "b/empty.png"] and meta["counts"] == [2, 2]
    info = check_records(tmp_path / "out.rec", tmp_path / "out.idx")
    assert info.num_images == 4 and info.ids_match_keys  # keys stay 0..3 despite the gap
    assert not list(tmp_path.glob("*.tmp-*"))


def test_names_the_lst_cannot_hold_are_skipped_and_reported(tmp_path, capsys):
    """A name that is not UTF-8 used to abort the pack with UnicodeEncodeError while writing the
    .lst; a tab or newline in a name silently split its .lst line."""
    folder = make_folder(tmp_path / "src", {"a": 2, "b": 1})
    good = (folder / "a" / "000.jpg").read_bytes()
    handle = os.open(os.fsencode(folder / "a") + b"/caf\xe9.jpg", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(handle, good)
    os.close(handle)
    (folder / "b" / "tab\tname.jpg").write_bytes(good)
    (folder / "b" / "new\nline.jpg").write_bytes(good)
    assert (
        pack_main([str(folder), str(tmp_path / "out"), "--resize", "0", "--num-workers", "0", "--quiet"]) == 0
    )
    out, err = capsys.readouterr()
    assert "packed 3 images" in out and "skipped 3 images" in err
    assert "a/caf\\xe9.jpg: name is not valid UTF-8" in err
    assert "b/tab\\tname.jpg: name contains a tab or line break" in err and "b/new\\nline.jpg" in err
    meta = json.loads((tmp_path / "out.classes.json").read_text())
    assert meta["skipped"] == ["a/caf\\xe9.jpg", "b/new\\nline.jpg", "b/tab\\tname.jpg"]
    lines = (tmp_path / "out.lst").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and [line.count("\t") for line in lines[:-1]] == [2, 2, 2]
    assert check_records(tmp_path / "out.rec", tmp_path / "out.idx").num_images == 3

    (folder / "c\td").mkdir()  # a class folder: skipping it would shift the labels
    with pytest.raises(DataError, match=r"class folder 'c\\td': name contains a tab"):
        pack(folder, tmp_path / "out2", resize=0, num_workers=0, progress=False)


def test_empty_class_folder_is_kept_as_a_class_and_warned_about(tmp_path, capsys):
    folder = make_folder(tmp_path / "src", {"a": 2, "c": 1})
    (folder / "b").mkdir()
    (folder / "d").mkdir()
    (folder / "d" / "broken.jpg").write_bytes(b"not an image")  # gives no image either
    assert (
        pack_main([str(folder), str(tmp_path / "out"), "--resize", "0", "--num-workers", "0", "--quiet"]) == 0
    )
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warning == [
        "warning: 2 class folders gave no image (b, d); they stay classes with 0 images so that the "
        "labels keep the folder order"
    ]
    meta = json.loads((tmp_path / "out.classes.json").read_text())
    assert meta["classes"] == ["a", "b", "c", "d"] and meta["counts"] == [2, 0, 1, 0]
    assert meta["empty_classes"] == ["b", "d"]
    it = val_iter(tmp_path / "out.rec", tmp_path / "out.idx", batch_size=4, input_size=24, num_workers=1)
    assert labels_of(it) == [0, 0, 2]


def test_negative_num_workers_is_refused(packed, tmp_path, capsys):
    _, folder, _ = packed
    assert pack_main([str(folder), str(tmp_path / "out"), "--num-workers", "-1", "--quiet"]) == 2
    err = capsys.readouterr().err
    want = "a2gluon pack: error: --num-workers must be 0 or more (0 or 1 decodes in this process), got -1\n"
    assert err == want
    assert not list(tmp_path.iterdir())


def test_leftovers_of_a_killed_pack_are_removed(packed, tmp_path, capsys):
    _, folder, _ = packed
    gone = subprocess.Popen(["true"])
    gone.wait()  # its PID is no longer alive
    dead = [tmp_path / f"out{s}.tmp-{gone.pid}" for s in (".rec", ".idx", ".lst", ".classes.json")]
    live = tmp_path / f"out.rec.tmp-{os.getppid()}"  # a pack still running keeps its files
    other = [tmp_path / "out.rec.tmp-x1", tmp_path / f"other.rec.tmp-{gone.pid}"]
    for path in dead + [live] + other:
        path.write_bytes(b"partial")
    args = [str(folder), str(tmp_path / "out"), "--resize", "16", "--num-workers", "0", "--quiet"]
    assert pack_main(args) == 0
    assert "removed 4 temporary files of an earlier pack that was killed" in capsys.readouterr().err
    assert not any(p.exists() for p in dead) and live.exists() and all(p.exists() for p in other)
    assert check_records(tmp_path / "out.rec", tmp_path / "out.idx").num_images == 12


def descendants(pid):
    """PIDs of all processes below ``pid`` (forkserver workers are its grandchildren)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="lists processes through /proc")
def test_sigterm_during_pack_removes_temporary_files_and_ends_the_workers(tmp_path):
    """The old packer died of SIGTERM at once, leaving OUT.*.tmp-PID behind (measured)."""
    rng = np.random.RandomState(0)
    pictures = [texture(rng, 240, 320) for _ in range(4)]
    for c in range(3):
        (tmp_path / "src" / f"c{c}").mkdir(parents=True)
        for i in range(100):
            cv2.imwrite(str(tmp_path / "src" / f"c{c}" / f"{i:03d}.jpg"), pictures[i % 4])
    cmd = [sys.executable, "-m", "a2gluon", "pack", str(tmp_path / "src"), str(tmp_path / "out")]
    cmd += ["--resize", "200", "--num-workers", "2", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(descendants(proc.pid)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # wait for the forkserver and both workers
    workers = descendants(proc.pid)
    assert len(workers) >= 3 and list(tmp_path.glob("out.*.tmp-*")), "the pack ended before the test"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err == "a2gluon pack: stopped by SIGTERM: no output written\n" and out == ""
    assert not list(tmp_path.glob("out*"))
    deadline = time.monotonic() + 10
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(running, workers))


def running(pid):
    """Whether process ``pid`` still runs (an exited orphan stays a zombie until init reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_existing_output_is_refused_without_force(packed, tmp_path, capsys):
    _, folder, _ = packed
    args = [str(folder), str(tmp_path / "p"), "--resize", "16", "--num-workers", "0", "--quiet"]
    assert pack_main(args) == 0
    before = (tmp_path / "p.rec").read_bytes()
    capsys.readouterr()
    assert pack_main(args[:3] + ["8"] + args[4:]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("a2gluon pack: error: ") and err.count("\n") == 1 and "--force" in err
    assert (tmp_path / "p.rec").read_bytes() == before
    assert pack_main(args[:3] + ["8"] + args[4:] + ["--force"]) == 0
    assert (tmp_path / "p.rec").read_bytes() != before


def test_classes_file_keeps_training_labels(packed, tmp_path):
    tmp, _, summary = packed
    val = make_folder(tmp_path / "val", {"dog": 2, "eel": 1}, seed=1)  # no "cat" folder
    out = pack(
        val, tmp_path / "val", resize=0, classes=summary["classes_json"], num_workers=0, progress=False
    )
    assert out["classes"] == ["cat", "dog", "eel"] and out["counts"] == [0, 2, 1]
    it = val_iter(out["rec"], out["idx"], batch_size=2, input_size=32, num_workers=1)
    assert labels_of(it) == [1, 1, 2]

    (val / "fox").mkdir()
    with pytest.raises(DataError, match="'fox'"):
        pack(val, tmp_path / "val2", classes=summary["rec"], num_workers=0, progress=False)


@pytest.mark.parametrize("bad", ["missing", "no_class_folders", "no_images"])
def test_bad_input_is_one_line_error_without_traceback(tmp_path, bad):
    root = tmp_path / "root"
    if bad != "missing":
        root.mkdir()
        (root / "README").write_text("x")
    if bad == "no_images":
        (root / "a").mkdir()
        (root / "a" / "x.txt").write_text("x")
    with pytest.raises(DataError):
        pack(root, tmp_path / "out", progress=False)
    if bad == "missing":  # once through the real command line
        proc = subprocess.run(
            [sys.executable, "-m", "a2gluon", "pack", str(root), str(tmp_path / "out")],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert proc.returncode == 2
        assert proc.stderr.startswith("a2gluon pack: error: ") and proc.stderr.count("\n") == 1
        assert "Traceback" not in proc.stderr and not list(tmp_path.glob("out*"))


def test_val_iter_pads_the_last_batch_and_sees_every_image_once(packed):
    _, _, summary = packed
    it = val_iter(summary["rec"], summary["idx"], batch_size=5, input_size=24, num_workers=1)
    assert len(it) == 3 and it.num_images == 12
    for _ in range(2):  # two epochs: no wrap-around, no stale rows
        it.reset()
        batches = list(it)
        assert [b.pad for b in batches] == [0, 0, 3]
        assert batches[0].data[0].shape == (5, 3, 24, 24) and batches[0].data[0].dtype == np.float32
        assert not batches[-1].data[0][2:].asnumpy().any() and not batches[-1].label[0][2:].asnumpy().any()
    assert labels_of(it) == [0] * 5 + [1] * 3 + [2] * 4


def test_two_parts_cover_every_image_once(tmp_path):
    folder = make_folder(tmp_path / "src", {f"c{i:02d}": 1 for i in range(11)})  # label = image
    out = pack(folder, tmp_path / "p", resize=32, num_workers=0, progress=False)
    assert part_sizes(11, 2) == [6, 5]
    parts = [
        labels_of(
            val_iter(out["rec"], out["idx"], 4, input_size=24, num_parts=2, part_index=i, num_workers=1)
        )
        for i in range(2)
    ]
    assert sorted(parts[0] + parts[1]) == list(range(11)) and len(parts[0]) == 6

    seen = []
    for i in range(2):  # training shards: shuffled, each within its own part
        it = train_iter(out["rec"], out["idx"], 3, input_size=24, num_parts=2, part_index=i, num_workers=1)
        labels = {int(v) for b in it for v in b.label[0].asnumpy()}
        seen.append(labels)
    assert seen[0] | seen[1] == set(range(11)) and not seen[0] & seen[1]
    with pytest.raises(DataError, match="empty"):
        val_iter(out["rec"], out["idx"], 4, num_parts=12, part_index=11)


def test_train_iter_batches_are_augmented_and_normalised(packed):
    _, _, summary = packed
    it = train_iter(
        summary["rec"], summary["idx"], 4, input_size=24, jitter=0.4, pca_noise=0.1, num_workers=1
    )
    batch = it.next()
    data = batch.data[0].asnumpy()
    assert data.shape == (4, 3, 24, 24) and data.dtype == np.float32 and batch.label[0].shape == (4,)
    assert -3 < data.mean() < 3 and 0.05 < data.std() < 3  # normalised, not 0-255
    labels = [
        int(v)
        for b in train_iter(summary["rec"], summary["idx"], 4, 24, num_workers=1)
        for v in b.label[0].asnumpy()
    ]
    assert sorted(labels) == [0] * 5 + [1] * 3 + [2] * 4 and labels != sorted(labels)  # shuffled

    # Wrapped-around images come out of the next epoch (12 images at batch 5: 3, 2, 3, 2, 2
    # batches in 5 epochs); ResizeIter gives every epoch it.num_batches batches.
    it = train_iter(summary["rec"], summary["idx"], 5, input_size=24, num_workers=1)
    assert (it.num_images, it.num_batches) == (12, 3)
    fixed = mx.io.ResizeIter(it, it.num_batches)
    for _ in range(3):
        fixed.reset()
        assert sum(1 for _ in fixed) == 3


def test_val_iter_matches_gluoncv_eval_transform_on_the_same_jpeg(tmp_path):
    """val_iter (ImageRecordIter: resize shorter side to 256, centre crop 224) against Gluon's
    Resize(256, keep_ratio) + CenterCrop + ToTensor + Normalize on the very JPEG bytes stored
    in each record.  Both decode with libmxnet's OpenCV (RGB), resize bilinearly with the same
    floor rounding of the longer side and crop at floor((size - 224) / 2), so the only difference
    left is float rounding of the normalisation: tolerance 1e-4 in normalised units (0.006 grey
    levels; a one-level difference anywhere, e.g. another JPEG decoder or interpolation, is
    0.017 and fails).  The images (up to 500 x 375) are larger than 256, so the resize matters.
    Gluon-CV's preset normalises with mean 0.485/0.456/0.406 by default; it is given this
    package's statistics (see a2gluon.data.eval_transform)."""
    rng = np.random.RandomState(3)
    for i, (height, width) in enumerate([(375, 500), (500, 375), (333, 500), (300, 301)]):
        (tmp_path / "src" / "k").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "src" / "k" / f"{i}.jpg"), texture(rng, height, width))
    out = pack(tmp_path / "src", tmp_path / "v", resize=0, pass_through=True, num_workers=0, progress=False)
    batch = val_iter(out["rec"], out["idx"], 4, num_workers=1).next()
    ours = batch.data[0].asnumpy()
    record = mx.recordio.MXIndexedRecordIO(out["idx"], out["rec"], "r")
    transform = eval_transform(224, 0.875)
    for i in range(4):
        _, jpeg = mx.recordio.unpack(record.read_idx(i))
        assert jpeg == (tmp_path / "src" / "k" / f"{i}.jpg").read_bytes()  # pass-through
        img = mx.image.imdecode(jpeg)
        np.testing.assert_allclose(ours[i], transform(img).asnumpy(), rtol=0, atol=1e-4)
        # Gluon-CV's own preset function, given the same normalisation statistics.
        preset = transform_eval(
            img, 256, 224, mean=[m / 255 for m in MEAN_RGB], std=[s / 255 for s in STD_RGB]
        )
        np.testing.assert_allclose(ours[i], preset.asnumpy()[0], rtol=0, atol=1e-4)

    # The folder loader is the same transform over the same files, with sorted-folder labels.
    loader, classes = folder_val_loader(tmp_path / "src", batch_size=3)
    data = [(x.asnumpy(), y.asnumpy()) for x, y in loader]
    assert classes == ["k"] and [d.shape[0] for d, _ in data] == [3, 1]
    np.testing.assert_allclose(np.concatenate([d for d, _ in data]), ours, rtol=0, atol=1e-4)
    assert not np.concatenate([y for _, y in data]).any()
    loader, classes = folder_val_loader(tmp_path / "src", batch_size=4, input_size=32, classes=["j", "k"])
    assert classes == ["j", "k"] and next(iter(loader))[1].asnumpy().tolist() == [1, 1, 1, 1]


def test_check_records_reads_labels_and_rejects_broken_pairs(packed, tmp_path):
    tmp, folder, summary = packed
    info = check_records(summary["rec"], summary["idx"], num_classes=3)
    assert (info.num_images, info.label_min, info.label_max, info.num_labels_seen) == (12, 0, 2, 3)
    assert info.label_counts == {0: 5, 1: 3, 2: 4} and info.classes == ["cat", "dog", "eel"]

    with pytest.raises(DataError, match="not found"):
        check_records(summary["rec"], tmp_path / "missing.idx")
    with pytest.raises(DataError, match="model has 2 classes"):
        check_records(summary["rec"], summary["idx"], num_classes=2)

    rec = Path(summary["rec"]).read_bytes()
    truncated = tmp_path / "truncated.rec"
    truncated.write_bytes(rec[: len(rec) // 2])
    with pytest.raises(DataError, match="truncated or swapped"):
        check_records(truncated, summary["idx"])

    lines = Path(summary["idx"]).read_text().splitlines()
    short_idx = tmp_path / "short.idx"
    short_idx.write_text("\n".join(lines[:-1]) + "\n")  # the last record is not indexed
    with pytest.raises(DataError, match="misses records"):
        check_records(summary["rec"], short_idx)

    other = pack(folder, tmp_path / "other", resize=20, num_workers=0, progress=False)  # other sizes
    with pytest.raises(DataError, match="truncated or swapped"):
        check_records(summary["rec"], other["idx"])


def test_synthetic_iter():
    it = SyntheticIter(batch_size=2, input_size=16, num_classes=5, num_batches=3, seed=1)
    assert it.provide_data[0].shape == (2, 3, 16, 16) and it.provide_label[0].shape == (2,)
    batches = list(it)
    assert len(batches) == 3 and batches[0].data[0].shape == (2, 3, 16, 16)
    assert batches[0].label[0].asnumpy().max() < 5
    assert list(it) == [] and (it.reset() or len(list(it)) == 3)


def test_digits_dataset_is_real_stratified_and_deterministic(tmp_path):
    out = make_digits_imagenet(tmp_path / "d", image_size=16)
    assert out["classes"] == [f"digit{d}" for d in range(10)]
    train, val = out["counts"]["train"], out["counts"]["val"]
    assert sum(train) + sum(val) == 1797
    for t, v in zip(train, val):
        assert abs(v / (t + v) - 0.2) < 0.01  # stratified
    img = cv2.imread(str(next((tmp_path / "d" / "val" / "digit3").iterdir())))
    assert img.shape == (16, 16, 3) and img.min() < 100 < img.max()  # dark ink on white

    files = sorted(p.relative_to(tmp_path / "d") for p in (tmp_path / "d").rglob("*.png"))
    same = make_digits_imagenet(tmp_path / "e", image_size=16)
    assert same["counts"] == out["counts"]
    assert files == sorted(p.relative_to(tmp_path / "e") for p in (tmp_path / "e").rglob("*.png"))
    assert all((tmp_path / "d" / f).read_bytes() == (tmp_path / "e" / f).read_bytes() for f in files[::50])

    assert make_digits_imagenet(tmp_path / "d", image_size=16) == out  # reused as it is
    assert digits_main([str(tmp_path / "d"), "--image-size", "16"]) == 0
    assert digits_main([str(tmp_path / "d"), "--image-size", "24"]) == 2  # other settings, no --force
    with pytest.raises(DataError, match="--force"):
        make_digits_imagenet(tmp_path / "d", image_size=24)
    assert make_digits_imagenet(tmp_path / "d", image_size=24, force=True)["counts"] == out["counts"]

    packed = pack(out["train"], tmp_path / "dtrain", resize=16, num_workers=0, progress=False)
    assert packed["images"] == sum(train) and packed["skipped"] == []


def test_digits_onto_an_existing_file_is_a_one_line_error(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    assert digits_main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("a2gluon digits: error: ") and err.count("\n") == 1 and "is not a folder" in err


def test_pack_module_cli_is_the_function():
    assert pack_module is pack and callable(pack)
