"""Export (symbol + params, ONNX), loading, predict and the CLIs' handling of bad input."""

import json
import os
import subprocess
import sys
import textwrap

import cv2
import mxnet as mx
import numpy as np
import pytest

from a2gluon.cli import export as export_cli
from a2gluon.cli import predict as predict_cli
from a2gluon.deploy import (
    ModelLoadError,
    export_model,
    load_gluon_model,
    load_symbol_model,
    read_class_names,
)
from a2gluon.deploy.preprocess import load_batch
from a2gluon.models import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trained_params(path, name, input_shape, classes=7, **kwargs):
    """Save the params of a freshly initialised `name` whose BatchNorms (including the attention
    blocks' zero-gamma norms, which would hide the attention path) have random statistics;
    return (path, input batch of 1, Gluon output)."""
    net = get_model(name, classes=classes, **kwargs)
    net.initialize(mx.init.Xavier(magnitude=2.0))
    rng = np.random.RandomState(0)
    for pname, p in net.collect_params().items():  # before the first forward (oneDNN pitfall)
        if pname.endswith(("gamma", "running_var")):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
        elif pname.endswith(("beta", "running_mean")):
            p.set_data(mx.nd.array(rng.uniform(-0.2, 0.2, p.shape)))
    x = mx.nd.array(rng.uniform(-1, 1, (1,) + tuple(input_shape)))
    y = net(x).asnumpy()
    net.save_parameters(str(path))
    return str(path), x.asnumpy(), y


FRESH = textwrap.dedent(
    """
    import sys
    import mxnet as mx
    import numpy as np

    prefix, x_file, out_file = sys.argv[1:4]
    x = np.load(x_file)
    net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    gluon = net(mx.nd.array(x)).asnumpy()
    mod = mx.mod.Module.load(prefix, 0, data_names=["data"], label_names=None)
    mod.bind(data_shapes=[("data", x.shape)], for_training=False)
    mod.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    module = mod.get_outputs()[0].asnumpy()
    assert "a2gluon" not in sys.modules, "the exported model needed a2gluon"
    np.savez(out_file, gluon=gluon, module=module)
    """
)


def check_exported(prefix, x, y, tmp_path):
    """SymbolBlock.imports and Module.load in a fresh process without a2gluon, and onnxruntime,
    all give the Gluon model's output."""
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    env = dict(os.environ, PYTHONPATH="")
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, prefix, str(tmp_path / "x.npy"), str(out)],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.load(out)
    np.testing.assert_allclose(got["gluon"], y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["module"], y, rtol=1e-5, atol=1e-5)
    if os.path.exists(prefix + ".onnx"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(prefix + ".onnx", options, providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["data"]
        onnx_out = session.run(None, {"data": x})[0]
        assert np.abs(onnx_out - y).max() < 1e-4


# --- export -----------------------------------------------------------------------------------


def test_export_cli_a2_resnet26_symbol_onnx_and_classes(tmp_path, capsys):
    pytest.importorskip("onnx")
    params, x, y = trained_params(tmp_path / "net.params", "a2_resnet26", (3, 64, 64))
    classes_file = tmp_path / "data.classes.json"
    classes_file.write_text(json.dumps({"classes": [f"c{i}" for i in range(7)]}))
    prefix = str(tmp_path / "exported")
    code = export_cli.main(
        ["--model", "a2_resnet26", "--params", params, "--out", prefix, "--input-size", "64"]
        + ["--classes", str(classes_file), "--onnx"]
    )
    assert code == 0
    for tail in ("-symbol.json", "-0000.params", ".onnx", ".json", ".classes.json"):
        assert os.path.isfile(prefix + tail), tail
    assert read_class_names(prefix + ".classes.json") == [f"c{i}" for i in range(7)]
    meta = json.loads(open(prefix + ".json").read())
    assert meta["model"] == "a2_resnet26" and meta["num_classes"] == 7 and meta["input_size"] == 64
    import onnx

    model = onnx.load(prefix + ".onnx")
    onnx.checker.check_model(model)
    read = {name for node in model.graph.node for name in node.input}
    assert [t.name for t in model.graph.initializer if t.name not in read] == []  # onnxruntime warns of each
    assert "Split" in {node.op_type for node in model.graph.node}  # the fused phi/theta/rho projection
    check_exported(prefix, x, y, tmp_path)
    import onnxruntime as ort  # the ONNX model's batch axis is free

    session = ort.InferenceSession(prefix + ".onnx", providers=["CPUExecutionProvider"])
    pair = session.run(None, {"data": np.concatenate([x, -x])})[0]
    assert pair.shape == (2, 7) and np.abs(pair[0] - y[0]).max() < 1e-4
    # the exported files load back, also as Gluon params of the registry model
    loaded = load_symbol_model(prefix)
    assert loaded.classes[0] == "c0" and loaded.input_size == 64
    np.testing.assert_allclose(loaded.net(mx.nd.array(x)).asnumpy(), y, rtol=1e-5, atol=1e-5)
    again = load_gluon_model("a2_resnet26", prefix + "-0000.params")
    np.testing.assert_allclose(again.net(mx.nd.array(x)).asnumpy(), y, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_export_a2_resnet50_224(tmp_path):
    pytest.importorskip("onnx")
    params, x, y = trained_params(tmp_path / "net.params", "a2_resnet50", (3, 224, 224), classes=10)
    loaded = load_gluon_model("a2_resnet50", params)
    assert loaded.num_classes == 10  # read off the params file
    prefix = str(tmp_path / "a2r50")
    export_model(loaded, prefix, (3, 224, 224), onnx=True)
    check_exported(prefix, x, y, tmp_path)


def test_export_video_a2_resnet26_3d(tmp_path):
    """The video models fold T x H x W with Reshape (0, 0, -3, 0), which MXNet's exporter
    rejects; a2gluon.deploy registers a general Reshape conversion."""
    pytest.importorskip("onnx")
    params, x, y = trained_params(tmp_path / "net.params", "a2_resnet26_3d", (3, 4, 32, 32))
    prefix = str(tmp_path / "new" / "folder" / "video")  # export creates the folder
    code = export_cli.main(
        ["--model", "a2_resnet26_3d", "--params", params, "--out", prefix]
        + ["--input-size", "32", "--frames", "4", "--onnx"]
    )
    assert code == 0
    check_exported(prefix, x, y, tmp_path)


def test_export_reads_training_meta_nonlocal(tmp_path):
    """The trainer's meta JSON beside the params gives the model, its options and class names;
    the NonLocal block's ops (batch_dot with transpose, softmax on an axis) convert to ONNX."""
    pytest.importorskip("onnx")
    kwargs = {"attention": "nonlocal", "blocks": ["conv4:1"]}
    params, x, y = trained_params(
        tmp_path / "imagenet-resnet26-0001.params", "resnet26", (3, 64, 64), 3, **kwargs
    )
    meta = {"model": "resnet26", "model_kwargs": kwargs, "num_classes": 3, "input_size": 64}
    meta.update(classes=["cat", "dog", "fox"], epoch=1, top1=0.5, top5=1.0)
    (tmp_path / "imagenet-resnet26-0001.json").write_text(json.dumps(meta))
    prefix = str(tmp_path / "nl")
    assert export_cli.main(["--params", params, "--out", prefix, "--onnx"]) == 0
    assert read_class_names(prefix + ".classes.json") == ["cat", "dog", "fox"]
    check_exported(prefix, x, y, tmp_path)


def test_fused_export_loads_in_plain_mxnet(tmp_path):
    """--fused writes PREFIX-fused (oneDNN's fused fp32 graph, with its own meta and class list)
    beside the plain export; SymbolBlock.imports and Module.load read it without a2gluon and
    give the Gluon model's output."""
    params, x, y = trained_params(tmp_path / "net.params", "a2_resnet26", (3, 64, 64))
    prefix = str(tmp_path / "exp")
    args = ["--model", "a2_resnet26", "--params", params, "--out", prefix, "--input-size", "64", "--fused"]
    assert export_cli.main(args + ["--classes", _class_file(tmp_path)]) == 0
    meta = json.loads(open(prefix + "-fused.json").read())
    assert meta["graph"] == "fp32-fused" and meta["input_size"] == 64
    assert json.loads(open(prefix + ".json").read())["graph"] == "fp32"
    assert read_class_names(prefix + "-fused.classes.json") == [f"c{i}" for i in range(7)]
    ops = {n["op"] for n in json.loads(open(prefix + "-fused-symbol.json").read())["nodes"]}
    assert "_sg_mkldnn_conv" in ops and "BatchNorm" not in ops, ops
    check_exported(prefix + "-fused", x, y, tmp_path)
    loaded = load_symbol_model(prefix + "-fused")
    assert loaded.graph == "fp32-fused" and loaded.classes[0] == "c0"


def _class_file(folder):
    path = folder / "names.json"
    path.write_text(json.dumps({"classes": [f"c{i}" for i in range(7)]}))
    return str(path)


def test_projection_is_one_convolution_and_old_checkpoints_load(tmp_path):
    """phi, theta and rho run as one convolution over their concatenated weights, with the
    parameters and names they had as three: a checkpoint written by the three-convolution
    block (simulated by its forward, restored below) loads unchanged through load_gluon_model,
    net.load_parameters (the trainer's resume) and export, and gives the same outputs."""
    from a2gluon.nn import DoubleAttention

    block = DoubleAttention(64, prefix="a2_")
    block.initialize()
    ops = [n["op"] for n in json.loads(block(mx.sym.var("data")).tojson())["nodes"]]
    assert ops.count("Convolution") == 2 and "SliceChannel" in ops  # projection + extension
    assert sorted(block.collect_params()) == sorted(
        f"a2_{p}"
        for p in ["phi_weight", "phi_bias", "theta_weight", "theta_bias", "rho_weight", "rho_bias"]
        + ["extend_weight", "norm_gamma", "norm_beta", "norm_running_mean", "norm_running_var"]
    )

    def three_convolutions(self, F, x):  # the block's projection before the fusion
        return self.phi(x), self.theta(x), self.rho(x)

    fused = DoubleAttention._project
    DoubleAttention._project = three_convolutions
    try:
        params, x, y_old = trained_params(tmp_path / "old.params", "a2_resnet26", (3, 64, 64))
    finally:
        DoubleAttention._project = fused
    loaded = load_gluon_model("a2_resnet26", params)
    np.testing.assert_allclose(loaded.net(mx.nd.array(x)).asnumpy(), y_old, rtol=1e-5, atol=1e-5)
    net = get_model("a2_resnet26", classes=7)
    net.load_parameters(params)  # what the trainer's --resume does
    np.testing.assert_allclose(net(mx.nd.array(x)).asnumpy(), y_old, rtol=1e-5, atol=1e-5)
    prefix = str(tmp_path / "exp")
    export_model(loaded, prefix, (3, 64, 64), fused=True)
    check_exported(prefix, x, y_old, tmp_path)
    check_exported(prefix + "-fused", x, y_old, tmp_path)


# --- loading ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """a2_resnet26 params for 7 classes and an image file."""
    folder = tmp_path_factory.mktemp("small")
    params, x, y = trained_params(folder / "net.params", "a2_resnet26", (3, 64, 64))
    image = folder / "image.jpg"
    rng = np.random.RandomState(1)
    cv2.imwrite(str(image), rng.randint(0, 256, (90, 120, 3)).astype(np.uint8))
    return {"params": params, "x": x, "y": y, "image": str(image), "dir": folder}


def test_load_gluon_model_errors(small, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_gluon_model("a2_resnet26", str(tmp_path / "none.params"))
    bad = tmp_path / "bad.params"
    bad.write_bytes(b"not params at all")
    with pytest.raises(ModelLoadError, match="not an MXNet params file"):
        load_gluon_model("a2_resnet26", str(bad))
    with pytest.raises(ModelLoadError, match=r"different model.*not in resnet26 \(features"):
        load_gluon_model("resnet26", small["params"])
    with pytest.raises(ModelLoadError, match="saved for 7 classes but the model was built for 5"):
        load_gluon_model("a2_resnet26", small["params"], num_classes=5)
    with pytest.raises(ModelLoadError, match="unknown model"):
        load_gluon_model("a2_resnet27", small["params"])
    loaded = load_gluon_model("a2_resnet26", small["params"])
    assert loaded.num_classes == 7
    np.testing.assert_allclose(
        loaded.net(mx.nd.array(small["x"])).asnumpy(), small["y"], rtol=1e-5, atol=1e-5
    )


def test_meta_json_of_other_params_is_named_not_num_classes(small, tmp_path):
    """A meta JSON whose class count differs from its params file: the JSON is at fault, and
    --num-classes (never given) is not the remedy."""
    params = tmp_path / "net.params"
    params.write_bytes(open(small["params"], "rb").read())
    (tmp_path / "net.json").write_text(json.dumps({"model": "a2_resnet26", "num_classes": 5}))
    with pytest.raises(ModelLoadError) as info:
        load_gluon_model(None, str(params))
    assert f"saved for 7 classes but {tmp_path / 'net.json'} says 5" in str(info.value)
    assert "--num-classes" not in str(info.value)


def test_load_symbol_model_errors(small, tmp_path):
    with pytest.raises(ModelLoadError, match="-symbol.json does not exist"):
        load_symbol_model(str(tmp_path / "nothing"))
    (tmp_path / "half-symbol.json").write_text("{}")
    with pytest.raises(ModelLoadError):
        load_symbol_model(str(tmp_path / "half"))


# --- preprocessing and predict ----------------------------------------------------------------


def _photographs(folder):
    """scikit-learn's two photographs (427 x 640) and crops of them whose shorter-side resize
    rounds down where rounding to nearest goes up (640 * 256 / 427 = 383.7; 455 * 256 / 301 =
    387.0 - a hair; 500 * 256 / 333 = 384.4 for a portrait crop), saved as JPEG in one class folder."""
    from sklearn.datasets import load_sample_images

    (folder / "photos").mkdir(parents=True)
    paths = []
    for i, image in enumerate(load_sample_images().images):
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        for name, crop in (("full", bgr), ("crop", bgr[:301, :455]), ("tall", bgr[:427, 100:384])):
            path = folder / "photos" / f"{i}-{name}.jpg"
            cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(str(path))
    return sorted(paths)


def test_predict_sees_the_tensor_val_iter_sees(tmp_path):
    """The same JPEG through predict's preprocessing and through val_iter (packed unchanged:
    --resize 0 --pass-through) gives the same input tensor, at sizes where rounding the resized
    side to nearest would differ from MXNet's rounding down."""
    from a2gluon.data import pack, val_iter
    from a2gluon.data.pipeline import shorter_side_shape

    paths = _photographs(tmp_path / "images")
    assert any(
        round(w * 256 / h) != shorter_side_shape(h, w, 256)[1]
        for h, w in (cv2.imread(p).shape[:2] for p in paths)
    )
    packed = pack(tmp_path / "images", tmp_path / "photos", resize=0, pass_through=True, progress=False)
    it = val_iter(packed["rec"], packed["idx"], len(paths), input_size=224, num_workers=1)
    want = next(iter(it)).data[0].asnumpy()
    got = load_batch(paths, 224).asnumpy()
    assert got.shape == want.shape == (len(paths), 3, 224, 224)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_predict_cli_symbol_and_params_agree(small, tmp_path, capsys):
    prefix = str(tmp_path / "exp")
    loaded = load_gluon_model("a2_resnet26", small["params"])
    export_model(loaded, prefix, (3, 64, 64), classes=[f"n{i}" for i in range(7)])
    capsys.readouterr()
    assert predict_cli.main([small["image"], "--symbol", prefix, "--topk", "3", "--json"]) == 0
    by_symbol = json.loads(capsys.readouterr().out)
    args = [small["image"], small["image"], "--model", "a2_resnet26", "--params", small["params"]]
    args += ["--classes", prefix + ".classes.json", "--topk", "3", "--json", "--input-size", "64"]
    assert predict_cli.main(args) == 0
    by_params = json.loads(capsys.readouterr().out)
    assert len(by_params) == 2 and by_params[0] == by_params[1]
    top = by_symbol[0]["predictions"]
    assert len(top) == 3 and top[0]["class"].startswith("n")
    assert [p["index"] for p in top] == [p["index"] for p in by_params[0]["predictions"]]
    np.testing.assert_allclose(
        [p["probability"] for p in top], [p["probability"] for p in by_params[0]["predictions"]], rtol=1e-4
    )
    assert predict_cli.main(args + ["--no-fuse"]) == 0  # the model as loaded, not the fused graph
    unfused = json.loads(capsys.readouterr().out)
    assert [p["index"] for p in unfused[0]["predictions"]] == [
        p["index"] for p in by_params[0]["predictions"]
    ]
    np.testing.assert_allclose(
        [p["probability"] for p in unfused[0]["predictions"]],
        [p["probability"] for p in by_params[0]["predictions"]],
        rtol=1e-4,
    )
    assert predict_cli.main([small["image"], "--symbol", prefix, "--topk", "2"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == small["image"] and len(text) == 3 and text[1].split()[1].startswith("n")


# --- bad input: one line, non-zero exit, no traceback -----------------------------------------


def _bad_cases(small, tmp):
    bad_params = tmp / "corrupt.params"
    bad_params.write_bytes(b"\x00garbage")
    bad_image = tmp / "broken.jpg"
    bad_image.write_text("not a jpeg")
    other = str(small["dir"] / "other.params")
    if not os.path.exists(other):
        net = get_model("resnet26", classes=7)
        net.initialize()
        net.save_parameters(other)
    p, img = small["params"], small["image"]
    ex = ["--out", str(tmp / "out")]
    folder = tmp / "folder"
    folder.mkdir(exist_ok=True)
    gluon = ["--model", "a2_resnet26", "--params", p]
    return [
        ("export", gluon + ["--out", str(folder) + "/"], "is a folder"),
        ("export", gluon + ["--out", str(folder)], "is a folder"),
        ("predict", [str(folder)] + gluon, "is a directory"),
        (
            "export",
            ["--model", "a2_resnet26", "--params", str(tmp / "missing.params")] + ex,
            "does not exist",
        ),
        ("export", ["--model", "a2_resnet26", "--params", str(bad_params)] + ex, "not an MXNet params file"),
        ("export", ["--model", "a2_resnet26", "--params", other] + ex, "different model"),
        ("export", ["--model", "a2_resnet26", "--params", p, "--num-classes", "10"] + ex, "for 7 classes"),
        ("export", ["--model", "a2_resnet26", "--params", p, "--input-size", "16"] + ex, "input-size 32"),
        ("predict", [img, "--model", "a2_resnet26", "--params", p, "--input-size", "8"], "input-size 32"),
        ("predict", [str(bad_image), "--model", "a2_resnet26", "--params", p], "cannot decode"),
        ("predict", [img, "--symbol", str(tmp / "nosuch")], "nosuch-symbol.json does not exist"),
    ]


def test_bad_input_gives_one_line(small, tmp_path, capsys):
    for cli, args, expect in _bad_cases(small, tmp_path):
        main = export_cli.main if cli == "export" else predict_cli.main
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (cli, args, err)
        assert len(err) == 1 and expect in err[0] and "Traceback" not in err[0], (cli, args, err)
        assert err[0].startswith(f"a2gluon {cli}: error: ")
    with pytest.raises(ModelLoadError):  # --debug shows the exception itself
        predict_cli.main([small["image"], "--symbol", str(tmp_path / "nosuch"), "--debug"])


def test_bad_input_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "a2gluon", "predict", "x.jpg", "--symbol", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope-symbol.json does not exist" in lines[0], proc.stderr


# --- error lines, export over an earlier export, fatal signals --------------------------------


def _error_of(fn):
    with pytest.raises(Exception) as info:
        fn()
    return info.value


def test_error_line_says_what_went_wrong_in_real_mxnet_errors(tmp_path):
    """MXNet 1.9.1's errors start with "Traceback (most recent call last):" and C++ frames;
    error_line gives the message, and names the file when the error does."""
    import errno

    from a2gluon.errors import error_line

    good = tmp_path / "good.params"
    mx.nd.save(str(good), {"w": mx.nd.ones((64, 64))})
    truncated = tmp_path / "truncated.params"
    truncated.write_bytes(good.read_bytes()[:5000])
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize()
    rec = tmp_path / "data.rec"
    writer = mx.recordio.MXRecordIO(str(rec), "w")
    writer.write(mx.recordio.pack_img(mx.recordio.IRHeader(0, 0.0, 0, 0), np.zeros((8, 8, 3), np.uint8)))
    writer.close()
    cut = tmp_path / "cut.rec"
    cut.write_bytes(rec.read_bytes()[:-3])
    cases = [
        (lambda: mx.nd.load(str(truncated)), "Invalid NDArray file format"),
        (lambda: net.load_parameters(str(truncated)), "Invalid NDArray file format"),
        (lambda: mx.nd.load(str(tmp_path / "none.params")), f"No such file or directory: {tmp_path}"),
        (lambda: mx.sym.load(str(truncated)), "Expect '{'"),
        (lambda: mx.nd.dot(mx.nd.ones((2, 3)), mx.nd.ones((4, 5))).wait_to_read(), "dot shape error"),
        (
            lambda: mx.io.ImageRecordIter(path_imgrec=str(cut), data_shape=(3, 8, 8), batch_size=1).next(),
            "do not align",
        ),
    ]
    if os.path.exists("/dev/full"):  # a write to a full disk
        cases.append((lambda: mx.nd.save("/dev/full", {"w": mx.nd.ones((512, 512))}), "disk full"))
    for fn, expect in cases:
        err = _error_of(fn)
        assert str(err).startswith("Traceback (most recent call last):")  # what the old line showed
        line = error_line(err)
        assert expect in line and "Traceback" not in line and "\n" not in line, (expect, line)
        assert not line.startswith(("MXNetError", "Check failed")), line
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "model.json"))
    assert error_line(full).startswith(f"no space left on device: {tmp_path / 'model.json'}")
    assert error_line(PermissionError(errno.EACCES, "Permission denied", "/x")) == "Permission denied: /x"
    assert error_line(ValueError("what went wrong\ndetails")) == "what went wrong"
    assert error_line(ValueError()) == "ValueError"


def test_run_command_prints_the_message_of_an_mxnet_error(tmp_path, capsys):
    import argparse

    from a2gluon.deploy.command import run_command

    bad = tmp_path / "bad.params"
    bad.write_bytes(b"\x00" * 64)
    code = run_command("prog", lambda args: mx.nd.load(str(bad)), argparse.Namespace())
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("prog: error: MXNet failed: Invalid NDArray file format; rerun with --debug")


def test_export_over_an_earlier_export_needs_force_and_leaves_none_of_its_files(small, tmp_path, capsys):
    prefix = str(tmp_path / "model")
    classes = tmp_path / "names.txt"
    classes.write_text("\n".join(f"c{i}" for i in range(7)))
    base = ["--model", "a2_resnet26", "--params", small["params"], "--out", prefix, "--input-size", "64"]
    assert export_cli.main(base + ["--classes", str(classes)]) == 0
    for tail in ("-0003.params", ".onnx", "-int8-symbol.json", "-int8-0000.params", "-fused.json"):
        open(prefix + tail, "w").close()  # an older export's files under the same prefix
    for tail in ("-0009.params", "-0009.json"):  # a training checkpoint: not part of any export
        open(prefix + tail, "w").close()
    capsys.readouterr()
    assert export_cli.main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--force" in err[0], err
    assert export_cli.main(base + ["--force"]) == 0
    names = sorted(os.listdir(tmp_path))
    expect = ["model-0000.params", "model-0009.json", "model-0009.params", "model-symbol.json", "model.json"]
    assert names == sorted(expect + ["names.txt"]), names
    assert load_symbol_model(prefix).classes is None  # not the class list of the first export


def test_export_that_fails_or_is_interrupted_leaves_no_file(small, tmp_path, monkeypatch, capsys):
    import errno

    from a2gluon.deploy import export as export_module

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    prefix = tmp_path / "out" / "model"
    args = ["--model", "a2_resnet26", "--params", small["params"], "--out", str(prefix), "--input-size", "64"]
    for fake, code in ((disk_full, 2), (interrupt, 130)):
        monkeypatch.setattr(export_module.json, "dump", fake)
        assert export_cli.main(args) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert os.listdir(prefix.parent) == []  # neither the files written before nor temporary ones
    assert err[0] == "a2gluon export: interrupted"
    monkeypatch.setattr(export_module.json, "dump", disk_full)
    export_cli.main(args)
    assert f"no space left on device: {prefix}.json" in capsys.readouterr().err
    monkeypatch.undo()
    save = mx.nd.save

    def cut_short(path, data):  # what a disk that fills up during the last buffer's write leaves
        save(path, data)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 8)

    monkeypatch.setattr(mx.nd, "save", cut_short)
    assert export_cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{prefix}-0000.params was not written completely (is the disk full?)" in err
    assert os.listdir(prefix.parent) == []


def test_fatal_signal_in_predict_prints_the_python_stack(tmp_path):
    """A damaged image can kill MXNet's decoder with SIGFPE: the stack, not silence."""
    code = (
        "import os, signal, sys\n"
        "import a2gluon.cli.predict as cli\n"
        "cli.run = lambda args: os.kill(os.getpid(), signal.SIGFPE)\n"
        "sys.exit(cli.main(['x.jpg', '--symbol', 'nothing']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    assert "Fatal Python error: Floating point exception" in proc.stderr, proc.stderr[-2000:]
