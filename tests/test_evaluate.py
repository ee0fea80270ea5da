"""eval_imagenet.py on the checkpoints of the session's digits run: RecordIO and folder data,
Gluon params, exported symbols and whole checkpoint directories, and one-line errors."""

import csv
import json
import shutil
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
        [sys.executable, "-m", "a2gluon", "export", "--params", best, "--model", "a2_resnet26"]
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


# --- skipped images and checkpoints, messages that fit what was given ---------------------------


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """Params of an untrained 10-class a2_resnet26 with the trainer's meta JSON beside them."""
    import mxnet as mx

    from a2gluon.models import get_model

    folder = tmp_path_factory.mktemp("untrained")
    net = get_model("a2_resnet26", classes=10)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    params = folder / "net.params"
    net.save_parameters(str(params))
    meta = {"model": "a2_resnet26", "model_kwargs": {}, "num_classes": 10, "input_size": 32}
    (folder / "net.json").write_text(json.dumps(meta))
    return str(params)


def in_process(args, capsys):
    """(exit status, stdout, stderr lines) of eval_imagenet.py run in this process."""
    from a2gluon.cli import evaluate as cli

    code = cli.main(["--no-progress"] + args, prog="eval_imagenet.py")
    out = capsys.readouterr()
    return code, out.out, [line for line in out.err.splitlines() if line.strip()]


def test_usage_finds_the_meta_json_beside_params_of_any_name(tmp_path):
    from a2gluon.cli import evaluate as cli

    weights = tmp_path / "net.weights"
    weights.touch()
    (tmp_path / "net.weights.json").write_text('{"model": "a2_resnet26"}')
    parser = cli.build_parser()
    args = parser.parse_args(["--params", str(weights), "--rec-val", "v.rec", "--rec-val-idx", "v.idx"])
    cli.check_usage(parser, args)  # the meta JSON names the model: no --model needed
    (tmp_path / "net.weights.json").unlink()
    with pytest.raises(SystemExit):
        cli.check_usage(parser, args)


def test_num_classes_is_mentioned_only_when_given(digits, untrained, tmp_path, capsys):
    three = tmp_path / "three"
    three.mkdir()
    for name in digits["classes"][:3]:
        (three / name).symlink_to(Path(digits["images_dir"]["val"]) / name, target_is_directory=True)
    code, _, err = in_process(["--params", untrained, "--data-dir", str(three)], capsys)
    assert code == 2 and len(err) == 1, err
    assert "the model has 10 classes but the data" in err[0] and "has 3" in err[0], err
    assert "--num-classes" not in err[0], err
    code, _, err = in_process(["--params", untrained, "--data-dir", str(three), "--num-classes", "3"], capsys)
    assert code == 2 and len(err) == 1 and "--num-classes" in err[0], err


def test_folder_skips_images_that_do_not_decode_as_the_packer_does(digits, untrained, tmp_path, capsys):
    val = tmp_path / "val"
    shutil.copytree(digits["images_dir"]["val"], val)
    first = sorted((val / digits["classes"][0]).iterdir())[0]
    (first.parent / "truncated.jpg").write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    (first.parent / "empty.jpg").write_bytes(b"")
    result = tmp_path / "r.json"
    code, out, err = in_process(
        ["--params", untrained, "--data-dir", str(val), "--json-out", str(result)], capsys
    )
    assert code == 0, err
    images = digits["images"][1]
    assert err[0] == f"eval_imagenet.py: skipped 2 of {images + 2} images in {val} that do not decode " + (
        "(the packer skips them too):"
    )
    assert sorted(line.strip() for line in err[1:]) == [
        f"{digits['classes'][0]}/{name}: not a decodable image" for name in ("empty.jpg", "truncated.jpg")
    ]
    scored = json.loads(result.read_text())
    assert scored["images"] == images and len(scored["skipped_images"]) == 2
    assert f"on {images} images" in out


def test_fatal_signal_prints_the_python_stack():
    """A damaged record can kill MXNet's decoder with SIGFPE: the stack, not silence."""
    code = (
        "import os, signal, sys\n"
        "import a2gluon.cli.evaluate as cli\n"
        "cli.run = lambda args: os.kill(os.getpid(), signal.SIGFPE)\n"
        "sys.exit(cli.main(['--model', 'a2_resnet26', '--params', 'x.params', '--rec-val', 'v.rec',"
        " '--rec-val-idx', 'v.idx']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    assert "Fatal Python error: Floating point exception" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_checkpoints_skips_damaged_ones_and_fails_only_when_none_scores(digits, digits_run, tmp_path, capsys):
    save, _ = digits_run
    for epoch in (4, 5, 6):
        for tail in (".params", ".json"):
            name = f"imagenet-a2_resnet26-{epoch:04d}{tail}"
            shutil.copyfile(save / name, tmp_path / name)
    stem = str(tmp_path / "imagenet-a2_resnet26-")
    Path(stem + "0004.json").write_text("{")  # broken JSON
    params = Path(stem + "0005.params")
    params.write_bytes(params.read_bytes()[:1000])  # truncated params
    result = tmp_path / "r.json"
    args = ["--checkpoints", str(tmp_path), "--json-out", str(result)] + digits["val"]
    code, out, err = in_process(args, capsys)
    assert code == 0, err
    assert len(err) == 2, err
    assert err[0].startswith(f"eval_imagenet.py: skipped {stem}0004.params: {stem}0004.json is not"), err
    assert err[1].startswith(f"eval_imagenet.py: skipped {stem}0005.params: {stem}0005.params is not"), err
    scored = json.loads(result.read_text())
    assert [c["epoch"] for c in scored["checkpoints"]] == [6] and len(scored["skipped_checkpoints"]) == 2
    assert scored["top1"] == pytest.approx(metrics(save)[-1]["val_top1"], abs=1e-9)
    assert "best: epoch 6" in out
    Path(stem + "0006.params").write_bytes(b"")
    code, _, err = in_process(args, capsys)
    assert code == 2 and len(err) == 4, err
    assert err[-1] == f"eval_imagenet.py: error: none of the 3 checkpoints in {tmp_path} could be scored " + (
        "(each is skipped above with the reason)"
    )


def test_runs_the_fused_graph_says_which_and_scores_as_unfused(digits, untrained, tmp_path, capsys):
    """In float32 on a CPU eval runs oneDNN's fused graph (built from the Gluon params at load)
    and prints which graph it ran; --no-fuse runs the Gluon model: the same logits within float
    error, hence the same top-1 and top-5."""
    scored = {}
    for name, extra in (("fused", []), ("gluon", ["--no-fuse"])):
        result = tmp_path / f"{name}.json"
        args = ["--params", untrained, "--json-out", str(result), "-j", "1"] + extra + digits["val"]
        code, out, err = in_process(args, capsys)
        assert code == 0, err
        lines = [line for line in out.splitlines() if line.startswith("graph: ")]
        assert len(lines) == 1, out
        scored[name] = json.loads(result.read_text()), lines[0]
    fused, gluon = scored["fused"], scored["gluon"]
    what = "fp32 oneDNN-fused graph: convolution + BatchNorm + ReLU + add folded"
    assert fused[1] == f"graph: fp32-fused ({what}), built at load from Gluon params {untrained}"
    assert gluon[1] == f"graph: gluon (fp32 Gluon graph, unfused), Gluon params {untrained}"
    assert (fused[0]["graph"], gluon[0]["graph"]) == ("fp32-fused", "gluon")
    assert fused[0]["top1"] == gluon[0]["top1"] and fused[0]["top5"] == gluon[0]["top5"]
    assert fused[0]["images"] == gluon[0]["images"] == digits["images"][1]


def test_fused_graph_gives_the_models_logits(untrained):
    """The graph eval and predict run: oneDNN's fused graph of the loaded model, the Gluon
    model's outputs within float error (random BatchNorm statistics, so every fold shows)."""
    import mxnet as mx
    import numpy as np

    from a2gluon.deploy import load_gluon_model
    from a2gluon.deploy.graph import fuse, inference_graph, ops, trace

    loaded = load_gluon_model(None, untrained)
    rng = np.random.RandomState(0)
    for name, param in loaded.net.collect_params().items():
        if name.endswith(("gamma", "running_var")):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif name.endswith(("beta", "running_mean")):
            param.set_data(mx.nd.array(rng.uniform(-0.2, 0.2, param.shape)))
    x = mx.nd.array(rng.uniform(-1, 1, (4, 3, 32, 32)))
    want = loaded.net(x).asnumpy()
    net, kind = inference_graph(loaded, mx.cpu())
    assert kind == "fp32-fused"
    got = net(x).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).all()
    sym, args, _ = trace(loaded.net)
    fused, _ = fuse(sym, args)
    assert "BatchNorm" not in ops(fused) and "Concat" not in ops(fused) and "_sg_mkldnn_conv" in ops(fused)
    assert inference_graph(loaded, mx.cpu(), fused=False) == (loaded.net, "gluon")
