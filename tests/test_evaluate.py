"""eval_imagenet.py on the checkpoints of the session's digits run: RecordIO and folder data,
Gluon params, exported symbols and whole checkpoint directories, and one-line errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TEST_ENV

EVAL = [sys.executable, f"{ROOT}/eval_imagenet.py", "--no-progress"]


def run(args, **kwargs):
    return subprocess.run(EVAL + args, capture_output=True, text=True, timeout=600, env=TEST_ENV, **kwargs)


def metrics(save):
    return [json.loads(line) for line in (save / "metrics.jsonl").read_text().splitlines()]


def one_line_error(out, *words):
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("eval_imagenet.py: error:"), out.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_scores_a_checkpoint_as_the_trainer_did(digits, digits_run, tmp_path):
    save, _ = digits_run
    last = metrics(save)[-1]
    out = run(
        ["--params", str(save / "imagenet-a2_resnet26-0006.params"), "--json-out", str(tmp_path / "r.json")]
        + digits["val"]
        + ["--per-class", str(tmp_path / "c.csv")]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["images"] == digits["images"][1]
    # the same validation pipeline as the trainer's: the same numbers
    assert result["top1"] == pytest.approx(last["val_top1"], abs=1e-9)
    assert result["top5"] == pytest.approx(last["val_top5"], abs=1e-9)
    assert result["images_per_sec"] > 0 and result["input_size"] == 32
    assert "top-1" in out.stdout and "chance top-1 10.00 %" in out.stdout
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert [r["class"] for r in rows] == digits["classes"]
    assert sum(int(r["images"]) for r in rows) == result["images"]
    hits = sum(float(r["top1"]) * int(r["images"]) for r in rows)
    assert hits == pytest.approx(result["top1"] * result["images"], abs=1e-6)


@pytest.mark.slow
def test_folder_data_and_exported_symbol_agree_with_records(digits, digits_run, tmp_path):
    save, _ = digits_run
    best = str(save / "imagenet-a2_resnet26-best.params")
    rec = run(["--params", best, "--json-out", str(tmp_path / "rec.json")] + digits["val"])
    assert rec.returncode == 0, rec.stderr[-3000:]
    top1 = json.loads((tmp_path / "rec.json").read_text())["top1"]
    folder = run(
        [
            "--params",
            best,
            "--data-dir",
            str(digits["images_dir"]["val"]),
            "--json-out",
            str(tmp_path / "f.json"),
        ]
    )
    assert folder.returncode == 0, folder.stderr[-3000:]
    # Gluon-CV's transforms on the JPEG files against ImageRecordIter on the records
    assert json.loads((tmp_path / "f.json").read_text())["top1"] == pytest.approx(top1, abs=0.02)
    export = subprocess.run(
        [sys.executable, "-m", "a2gluon.export", "--params", best, "--model", "a2_resnet26"]
        + ["--input-size", "32", "--out", str(tmp_path / "exp" / "digits")],
        capture_output=True,
        text=True,
        timeout=600,
        env=TEST_ENV,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    sym = run(
        [
            "--symbol",
            str(tmp_path / "exp" / "digits"),
            "--input-size",
            "32",
            "--json-out",
            str(tmp_path / "s.json"),
        ]
        + digits["val"]
    )
    assert sym.returncode == 0, sym.stderr[-3000:]
    assert json.loads((tmp_path / "s.json").read_text())["top1"] == pytest.approx(top1, abs=1e-9)


@pytest.mark.slow
def test_scores_every_checkpoint_and_names_the_best(digits, digits_run, tmp_path):
    save, _ = digits_run
    out = run(["--checkpoints", str(save), "--json-out", str(tmp_path / "all.json")] + digits["val"])
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "all.json").read_text())
    assert [c["epoch"] for c in result["checkpoints"]] == [1, 2, 3, 4, 5, 6]
    by_trainer = {r["epoch"]: r["val_top1"] for r in metrics(save)}
    for c in result["checkpoints"]:
        assert c["top1"] == pytest.approx(by_trainer[c["epoch"]], abs=1e-9)
    assert result["top1"] == max(by_trainer.values())
    assert "best: epoch" in out.stdout


def test_bad_input_is_one_line(digits, tmp_path):
    import mxnet as mx

    from a2gluon.models import get_model

    net = get_model("a2_resnet26", classes=10)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    params = tmp_path / "net.params"
    net.save_parameters(str(params))
    val = digits["val"]
    one_line_error(
        run(["--model", "a2_resnet26", "--params", str(tmp_path / "nope.params")] + val), "nope.params"
    )
    bad = tmp_path / "bad.params"
    bad.write_bytes(b"not a params file")
    one_line_error(run(["--model", "a2_resnet26", "--params", str(bad)] + val), "bad.params")
    one_line_error(run(["--model", "resnet26", "--params", str(params)] + val))
    one_line_error(run(["--model", "a2_resnet26", "--params", str(params), "--num-classes", "5"] + val), "5")
    # a folder with three of the ten classes: the model's 10 classes disagree with the data's 3
    sub = tmp_path / "three"
    for name in digits["classes"][:3]:
        (sub / name).parent.mkdir(parents=True, exist_ok=True)
        (sub / name).symlink_to(Path(digits["images_dir"]["val"]) / name, target_is_directory=True)
    one_line_error(
        run(["--model", "a2_resnet26", "--params", str(params), "--data-dir", str(sub)]), "10 classes", "3"
    )
    one_line_error(run(["--symbol", str(tmp_path / "missing")] + val), "symbol.json")
    one_line_error(
        run(["--model", "a2_resnet26", "--params", str(params), "--input-size", "4"] + val), "input"
    )
    one_line_error(
        run(
            [
                "--model",
                "a2_resnet26",
                "--params",
                str(params),
                "--rec-val",
                str(tmp_path / "x.rec"),
                "--rec-val-idx",
                str(tmp_path / "x.idx"),
            ]
        ),
        "x.rec",
    )
