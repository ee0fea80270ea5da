"""The deep record check: damaged images inside a .rec, the crash they cause, finding them,
the cache of the verdict, the clean copy, and the check_records command line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data import labels_of, make_folder

from a2gluon.cli.check_records import main as check_main
from a2gluon.data import (
    BadRecord,
    DataError,
    VerifyResult,
    check_records,
    crash_signal_name,
    describe_crash,
    known_bad_records,
    pack,
    refuse_known_bad_records,
    val_iter,
    verify_records,
    write_clean_records,
)
from a2gluon.data import verify as verify_module
from a2gluon.data.pipeline import read_index
from a2gluon.data.verify import CRASH_KEYS_ENV, UNDECODABLE, cache_path

ROOT = Path(__file__).resolve().parents[1]
BAD_KEY = 3


def image_span(rec_bytes, offset):
    """(start, end) of the image bytes of the record at ``offset`` (flag-0 header)."""
    length = int.from_bytes(rec_bytes[offset + 4 : offset + 8], "little") & ((1 << 29) - 1)
    return offset + 8 + 24, offset + 8 + length


def frame_header(jpeg):
    """Position of the JPEG start-of-frame marker (FF C0 / C1 / C2)."""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i + 1] in (0xC0, 0xC1, 0xC2):
            return i
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    raise AssertionError("no frame header")


def damage(rec, idx, key, kind):
    """Damage the JPEG of record ``key`` in place, keeping its length (so the index still fits)."""
    data = bytearray(Path(rec).read_bytes())
    keys, offsets = read_index(idx)
    start, end = image_span(data, int(offsets[list(keys).index(key)]))
    sof = start + frame_header(data[start:end])
    if kind == "height":  # frame header: FF C0, length (2), precision (1), height (2), width (2), Nf
        data[sof + 5 : sof + 7] = b"\0\0"
    elif kind == "components":
        data[sof + 9] = 0
    elif kind == "start_marker":
        data[start : start + 2] = b"\0\0"
    elif kind == "scrambled":
        data[start + 2 : end] = (
            np.random.RandomState(key).randint(0, 256, end - start - 2).astype(np.uint8).tobytes()
        )
    elif kind == "tail_zeroed":  # libjpeg warns ("premature end of data") but decodes: not bad
        middle = (start + end) // 2
        data[middle:end] = bytes(end - middle)
    else:
        raise ValueError(kind)
    Path(rec).write_bytes(bytes(data))


def copy_set(src_prefix, dst_prefix):
    for suffix in (".rec", ".idx", ".lst", ".classes.json"):
        shutil.copy(str(src_prefix) + suffix, str(dst_prefix) + suffix)
    return str(dst_prefix) + ".rec", str(dst_prefix) + ".idx"


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Two classes of 6 images (12 records, keys 0-11), packed at --resize 32."""
    tmp = tmp_path_factory.mktemp("verify")
    folder = make_folder(tmp / "src", {"cat": 6, "dog": 6})
    summary = pack(folder, tmp / "clean", resize=32, num_workers=0, progress=False)
    return tmp, summary


@pytest.fixture()
def damaged(packed, tmp_path):
    """A copy of the packed set whose record 3 (cat/003.jpg) has a zero image height."""
    tmp, _ = packed
    rec, idx = copy_set(tmp / "clean", tmp_path / "damaged")
    damage(rec, idx, BAD_KEY, "height")
    return rec, idx


RUN_PIPELINE = """
import sys
from a2gluon.data import train_iter, val_iter
rec, idx, which = sys.argv[1:]
make = val_iter if which == "val" else train_iter
it = make(rec, idx, 4, input_size=24, num_workers=1)
print("images", sum(b.data[0].shape[0] - b.pad for b in it))
"""


def run_pipeline(rec, idx, which):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", RUN_PIPELINE, rec, idx, which],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_damaged_image_kills_val_iter_and_the_deep_check_names_it(packed, damaged, tmp_path):
    """The reproduction.  Record 3's JPEG frame header gets height 0 (same length, so the index
    still fits and check_records passes).  MXNet's decoder returns an empty image, and

    * val_iter (shorter side resized) dies of SIGFPE: return code -8 (exit status 136), no
      output at all (``param_.resize * rows / cols`` with cols 0 in image_aug_default.cc);
    * train_iter (random resized crop) raises MXNetError "!ssize.empty()" from OpenCV's resize,
      naming no record.

    The same two outcomes were measured for a zeroed component count, a zeroed start-of-image
    marker, scrambled or zeroed bytes after the header.  An index that just leaves record 3
    out does not help: MXNet reads each indexed record up to the next indexed offset, so it
    still decodes record 3 and dies; check_records refuses such an index ("misses records").
    The deep check finds the record, and the packer's other records decode fine.
    """
    rec, idx = damaged
    assert check_records(rec, idx).num_images == 12  # the header check cannot see it
    val = run_pipeline(rec, idx, "val")
    assert val.returncode == -8 and "images" not in val.stdout
    assert crash_signal_name(val.returncode) == "SIGFPE"
    train = run_pipeline(rec, idx, "train")
    assert train.returncode == 1 and "MXNetError" in train.stderr and "!ssize.empty()" in train.stderr

    lines = Path(idx).read_text().splitlines()
    gap_idx = tmp_path / "gap.idx"
    gap_idx.write_text("\n".join(line for line in lines if not line.startswith(f"{BAD_KEY}\t")) + "\n")
    assert run_pipeline(rec, str(gap_idx), "val").returncode == -8
    with pytest.raises(DataError, match="misses records"):
        check_records(rec, gap_idx)

    result = verify_records(rec, idx, num_workers=2, progress=False, cache=False)
    offset = int(read_index(idx)[1][BAD_KEY])
    assert result.bad == [(BAD_KEY, offset, UNDECODABLE)] and result.num_records == 12
    assert run_pipeline(packed[1]["rec"], packed[1]["idx"], "val").stdout.split() == ["images", "12"]


def test_every_kind_of_damage_is_found_and_a_readable_one_is_not(packed, tmp_path):
    tmp, _ = packed
    rec, idx = copy_set(tmp / "clean", tmp_path / "kinds")
    kinds = {1: "height", 4: "components", 6: "start_marker", 9: "scrambled", 10: "tail_zeroed"}
    for key, kind in kinds.items():
        damage(rec, idx, key, kind)
    result = verify_records(rec, idx, num_workers=2, progress=False, cache=False)
    assert result.bad_keys == [1, 4, 6, 9]  # file order; 10 decodes (with a libjpeg warning)
    assert {b.reason for b in result.bad} == {UNDECODABLE}
    report = result.report()
    assert "4 of 12 records" in report and "key 1 (byte " in report and "cat/001.jpg" in report
    assert "--write-clean NEW_PREFIX" in report


def test_cache_is_written_reused_and_recomputed_when_a_file_changes(damaged, monkeypatch):
    rec, idx = damaged
    assert known_bad_records(rec, idx) is None and refuse_known_bad_records(rec, idx) is None
    first = verify_records(rec, idx, num_workers=1, progress=False)
    assert not first.cached and first.cache_path == str(cache_path(idx)) and Path(first.cache_path).is_file()
    assert json.loads(cache_path(idx).read_text())["bad"][0][0] == BAD_KEY

    calls = []
    real = verify_module._check_all
    monkeypatch.setattr(verify_module, "_check_all", lambda *a: calls.append(a) or real(*a))
    again = verify_records(rec, idx, num_workers=1, progress=False)
    assert calls == [] and again.cached and again.bad == first.bad  # nothing decoded
    assert known_bad_records(rec, idx).bad == first.bad
    with pytest.raises(DataError) as err:
        refuse_known_bad_records(rec, idx)
    message = str(err.value)
    assert "\n" not in message and f"keys {BAD_KEY}" in message and "--write-clean" in message

    uncached = verify_records(rec, idx, num_workers=1, progress=False, cache=False)
    assert len(calls) == 1 and not uncached.cached and uncached.bad == first.bad

    stat = os.stat(rec)
    os.utime(rec, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same bytes, newer
    assert known_bad_records(rec, idx) is None  # stale
    fresh = verify_records(rec, idx, num_workers=1, progress=False)
    assert len(calls) == 2 and not fresh.cached
    assert json.loads(cache_path(idx).read_text())["files"]["rec"]["mtime_ns"] == os.stat(rec).st_mtime_ns
    assert known_bad_records(rec, idx) is not None


def test_a_worker_killed_by_sigfpe_is_survived_and_its_record_reported(damaged, monkeypatch):
    """The test hook makes the worker that meets key 5 kill itself with SIGFPE, as the
    decoder does in val_iter; the check must go on, name key 5, and still find key 3."""
    rec, idx = damaged
    monkeypatch.setenv(CRASH_KEYS_ENV, "5,11")
    result = verify_records(rec, idx, num_workers=2, progress=False, cache=False)
    assert result.bad_keys == [BAD_KEY, 5, 11]
    assert result.bad[1].reason == result.bad[2].reason == "crashed the decoder (SIGFPE)"
    assert result.bad[0].reason == UNDECODABLE


def test_clean_copy_reads_every_other_image(packed, damaged, tmp_path):
    rec, idx = damaged
    out = write_clean_records(rec, idx, [BAD_KEY], tmp_path / "fixed", progress=False)
    assert out["records"] == 11 and out["excluded"] == [BAD_KEY]
    info = check_records(out["rec"], out["idx"], num_classes=2)
    assert info.num_images == 11 and info.label_counts == {0: 5, 1: 6} and info.ids_match_keys
    assert [int(k) for k in read_index(out["idx"])[0]] == [k for k in range(12) if k != BAD_KEY]
    it = val_iter(out["rec"], out["idx"], batch_size=4, input_size=24, num_workers=1)
    assert labels_of(it) == [0] * 5 + [1] * 6  # every other image, no crash
    meta = json.loads(Path(out["classes_json"]).read_text())
    assert meta["counts"] == [5, 6] and meta["num_images"] == 11 and meta["excluded"]["keys"] == [BAD_KEY]
    lst = Path(out["lst"]).read_text().splitlines()
    assert len(lst) == 11 and not any(line.startswith(f"{BAD_KEY}\t") for line in lst)
    assert verify_records(out["rec"], out["idx"], num_workers=1, progress=False).ok

    with pytest.raises(DataError, match="exists; use --force"):
        write_clean_records(rec, idx, [BAD_KEY], tmp_path / "fixed", progress=False)
    with pytest.raises(DataError, match="no record has key 99"):
        write_clean_records(rec, idx, [99], tmp_path / "other", progress=False)
    with pytest.raises(DataError, match="is an input"):
        write_clean_records(rec, idx, [BAD_KEY], Path(rec).with_suffix(""), force=True, progress=False)


def test_truncated_index_is_still_refused(packed, tmp_path):
    _, summary = packed
    lines = Path(summary["idx"]).read_text().splitlines()
    short = tmp_path / "short.idx"
    short.write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(DataError, match="misses records"):
        verify_records(summary["rec"], short, num_workers=1, progress=False, cache=False)
    assert not cache_path(short).exists()


def test_cli_exit_codes_and_messages(packed, damaged, tmp_path, capsys):
    rec, idx = damaged
    assert check_main([rec]) == 0  # fast check: headers fine, decoding not known yet
    out = capsys.readouterr().out
    assert "12 images, 2 distinct labels" in out and "0 (cat): 6, 1 (dog): 6" in out and "--deep" in out

    assert check_main([rec, idx, "--deep", "--quiet", "--num-workers", "2"]) == 1
    out = capsys.readouterr().out
    assert f"key {BAD_KEY} (byte " in out and "cat/003.jpg" in out and "1 of 12 records" in out
    assert check_main([rec]) == 1  # the fast check now knows from the cache
    assert "1 of 12 records" in capsys.readouterr().out

    clean = tmp_path / "clean"
    assert check_main([rec, "--deep", "--quiet", "--write-clean", str(clean)]) == 1
    assert "wrote the 11 other records" in capsys.readouterr().out
    assert check_main([str(clean) + ".rec", "--deep", "--quiet"]) == 0
    assert "all 11 records decode" in capsys.readouterr().out

    for argv in (
        [str(tmp_path / "missing.rec")],
        [rec, "--write-clean", str(tmp_path / "x")],  # needs --deep
        [rec, "--deep", "--num-workers", "0"],
        [rec, "--deep", "--write-clean", str(clean)],  # exists: refused before decoding
        [],
    ):
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("a2gluon check-records: error: ") and err.count("\n") == 1, err


def exit_code(argv):
    """check_records' exit status, whether main returns it or argparse exits."""
    try:
        return check_main(argv)
    except SystemExit as stop:
        return stop.code


def test_cli_runs_as_a_module(damaged):
    rec, _ = damaged
    proc = subprocess.run(
        [sys.executable, "-m", "a2gluon", "check-records", rec, "--deep", "--quiet", "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=120,
    )
    assert proc.returncode == 1 and f"key {BAD_KEY} " in proc.stdout and "Traceback" not in proc.stderr
    assert not cache_path(rec[: -len(".rec")] + ".idx").exists()  # --no-cache writes none


def test_report_lists_at_most_twenty_bad_records():
    bad = [BadRecord(k, 100 * k, UNDECODABLE) for k in range(25)]
    result = VerifyResult("x.rec", "x.idx", 1000, bad, 1.0, cache_path="x.idx.verified.json")
    lines = result.report().splitlines()
    assert lines[0].startswith("x.rec: 25 of 1000 records cannot be read")
    assert [line.split(" (")[0] for line in lines[1:21]] == [f"  key {k}" for k in range(20)]
    assert lines[21] == "  ... and 5 more (all keys in x.idx.verified.json)" and lines[22].startswith(
        "what to do: "
    )


def test_crash_messages_for_the_integrator():
    assert crash_signal_name(-8) == crash_signal_name(136) == "SIGFPE"
    assert crash_signal_name(-11) == crash_signal_name(139) == "SIGSEGV"
    assert crash_signal_name(1) is None and crash_signal_name(-15) is None and crash_signal_name(0) is None
    line = describe_crash("/data/val.rec", -8)
    assert line == (
        "the process was killed by SIGFPE inside MXNet's image decoder while reading /data/val.rec: "
        "a damaged image; run `a2gluon check-records /data/val.rec --deep`"
    )
    both = describe_crash(["a.rec", "b c.rec"])
    assert "SIGFPE/SIGSEGV" in both and "a.rec or b c.rec" in both and "'b c.rec' --deep" in both
    assert "\n" not in both
