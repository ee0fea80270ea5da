"""Inference on CPU in every runtime: throughput of a2_resnet50 against resnet50 (Gluon, exported
fp32 symbol, its oneDNN-fused graph, the calibrated INT8 graph, onnxruntime fp32 and INT8), and
the held-out top-1 of a trained a2_resnet26 in each runtime.

Throughput: eval_imagenet.py's model step on one in-memory batch (no data loading), 3×224×224
input, 1000 classes, CPU, randomly initialised weights (MSRAPrelu, seed 0) exported once with
`a2gluon.deploy.export_model(..., onnx=True, fused=True, int8=...)` and shared by the runtimes.
'Gluon': the registry model with the exported parameters; 'fp32 symbol': PREFIX-symbol.json +
PREFIX-0000.params through `mx.gluon.SymbolBlock.imports` (the unfused graph, the baseline of the
speed-ups); 'fp32 fused': PREFIX-fused (oneDNN's fused graph, what eval and predict run in
float32); 'INT8': PREFIX-int8 (oneDNN INT8; naive calibration on 64 seeded standard-normal
images, which sets the speed, not the accuracy); all hybridized with static_alloc and
static_shape. 'onnxruntime': `InferenceSession` on PREFIX.onnx / PREFIX-int8.onnx (onnxruntime's
static QDQ quantization, uint8 activations, per-channel int8 weights; `onnxruntime.quantization`
imports `ml_dtypes`, which the onnx extra does not install: the row is left out without it),
CPUExecutionProvider, --threads intra-op threads, 1 inter-op thread, all graph optimisations
(that worker does not import MXNet).

- **images/s**: batch / median step time over the timed steps of the fresh processes of a cell
  (the two models alternating); a step ends with the logits in a numpy array. In brackets: the
  lowest and highest of the processes' own medians.
- **time per image** ratio: the first model's time per image over the second's; **multiply-adds**:
  `a2gluon.profile.profile_model` at batch 1; **× fp32 symbol**: the runtime's images/s over
  the unfused fp32 symbol's, same model and batch.
- **agreement (random weights)**: 8 seeded standard-normal images through every runtime in one
  process; largest absolute difference of the logits from the Gluon model's and how many top-1
  classes are the same. With random weights an INT8 model's top-1 says little: the held-out
  table is the accuracy measurement.
- **held-out top-1**: `a2_resnet26` trained on scikit-learn's digit scans (a2gluon.data digits,
  32×32, 1438 training and 359 held-out images, train_imagenet.py with --accuracy-epochs epochs,
  batch 32, lr 0.02 cosine, 1 warm-up epoch), exported with INT8 calibrated (naive) on 512 of its
  training images; top-1 of every runtime on the held-out images and agreement of its top-1 with
  the fp32 Gluon model's.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import _harness as h

RUNTIMES = {
    "gluon": "Gluon, hybridized (fp32)",
    "symbol": "fp32 symbol, unfused",
    "fused": "fp32 symbol, oneDNN-fused",
    "int8": "INT8 symbol (oneDNN)",
    "onnxruntime": "onnxruntime fp32",
    "onnxruntime-int8": "onnxruntime INT8",
}
ONEDNN_RUNTIMES = ("symbol", "fused", "int8")  # the ones --isa limits
ISA_CAPS = ("SSE41", "AVX", "AVX2", "AVX512_CORE", "AVX512_CORE_VNNI")
INPUT_SHAPE, CLASSES, CHECK_BATCH, CALIB_IMAGES = (3, 224, 224), 1000, 8, 64
# what the digits model is trained with (tests/conftest.py's DIGITS_RECIPE, more epochs)
DIGITS_TRAIN = ["--model", "a2_resnet26", "--input-size", "32", "--num-data-workers", "1"]
DIGITS_TRAIN += ["--batch-size", "32", "--lr", "0.02", "--lr-mode", "cosine", "--warmup-epochs", "1"]
DIGITS_TRAIN += ["--min-random-area", "0.8", "--no-wd", "--log-interval", "50"]


def make_batch(batch, seed=0):
    """A seeded standard-normal batch (what normalised images look like), float32 numpy."""
    import numpy as np

    return np.random.RandomState(seed).standard_normal((batch, *INPUT_SHAPE)).astype(np.float32)


def runtime_files(runtime, prefix):
    """The export prefix (or ONNX file) a runtime runs."""
    suffixes = {"fused": "-fused", "int8": "-int8", "onnxruntime": ".onnx", "onnxruntime-int8": "-int8.onnx"}
    return prefix + suffixes.get(runtime, "")


def make_net(runtime, prefix, model=None):
    """A callable (numpy batch -> numpy logits) running `runtime` on the export under `prefix`."""
    if runtime.startswith("onnxruntime"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        path, cpu = runtime_files(runtime, prefix), ["CPUExecutionProvider"]
        session = ort.InferenceSession(path, options, providers=cpu)
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    import mxnet as mx

    from a2gluon.deploy import load_gluon_model, load_symbol_model

    if runtime == "gluon":
        net = load_gluon_model(model or os.path.basename(prefix), f"{prefix}-0000.params").net
    else:
        net = load_symbol_model(runtime_files(runtime, prefix)).net
    net.hybridize(static_alloc=True, static_shape=True)  # a2gluon.cli.evaluate.prepare
    return lambda x: net(mx.nd.array(x, ctx=mx.cpu())).asnumpy()


def check(case):
    """Logits of CHECK_BATCH seeded images in every runtime against the Gluon model's."""
    import numpy as np

    x = make_batch(CHECK_BATCH, seed=1)
    ref = make_net("gluon", case["check"])(x).astype(np.float64)
    out = {"max_abs_output": float(np.abs(ref).max()), "images": CHECK_BATCH, "runtimes": {}}
    for runtime in case["runtimes"]:
        if runtime != "gluon":
            got = make_net(runtime, case["check"])(x).astype(np.float64)
            same = int((got.argmax(1) == ref.argmax(1)).sum())
            out["runtimes"][runtime] = {"max_abs_diff": float(np.abs(got - ref).max()), "top1_same": same}
    return out


def accuracy(case):
    """Train a2_resnet26 on the digits, export every graph, score the held-out images in each."""
    import numpy as np

    from a2gluon.data import make_digits_imagenet, pack, val_iter
    from a2gluon.deploy import export_model, load_gluon_model
    from a2gluon.deploy.int8 import Int8Options, calibration_set

    root = case["accuracy"]
    made = make_digits_imagenet(os.path.join(root, "images"), image_size=32)
    train = pack(made["train"], os.path.join(root, "train"), resize=32, num_workers=1, progress=False)
    val = pack(made["val"], os.path.join(root, "val"), resize=32, num_workers=1,
               classes=train["classes_json"], progress=False)  # fmt: skip
    epochs, save = case["epochs"], os.path.join(root, "run")
    cmd = [sys.executable, str(h.ROOT / "train_imagenet.py"), *DIGITS_TRAIN, "--num-epochs", str(epochs)]
    cmd += ["--rec-train", train["rec"], "--rec-train-idx", train["idx"], "--save-dir", save]
    start = time.perf_counter()
    env = dict(os.environ, MXNET_ENFORCE_DETERMINISM="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=h.ROOT)
    if proc.returncode:
        return {"error": "training failed", "stderr_tail": proc.stderr.splitlines()[-5:]}
    train_s = time.perf_counter() - start
    params = os.path.join(save, f"imagenet-a2_resnet26-{epochs:04d}.params")
    loaded = load_gluon_model(None, params)
    calib = calibration_set(train["rec"], train["idx"], num_images=512, input_size=32)
    int8 = Int8Options(calib, "naive", onnx="onnxruntime-int8" in case["runtimes"])
    prefix = os.path.join(root, "digits")
    export_model(loaded, prefix, (3, 32, 32), onnx=True, fused=True, int8=int8)
    it = val_iter(val["rec"], val["idx"], val["images"], input_size=32, num_workers=1)
    batch = next(iter(it))
    count = val["images"] - (batch.pad or 0)
    x, labels = batch.data[0].asnumpy()[:count], batch.label[0].asnumpy()[:count].astype(np.int64)
    top1 = {r: make_net(r, prefix, "a2_resnet26")(x).argmax(1) for r in case["runtimes"]}
    hits = {r: (float((p == labels).mean()), float((p == top1["gluon"]).mean())) for r, p in top1.items()}
    scores = {r: {"top1": top, "agreement": agree} for r, (top, agree) in hits.items()}
    out = dict(images=int(count), train_images=train["images"], epochs=epochs, train_s=train_s)
    return dict(out, calib_images=calib.count, runtimes=scores)


def measure(case):
    """Passes of one (runtime, model, batch) case, the runtimes' agreement, or the accuracy run."""
    if "check" in case:
        return check(case)
    if "accuracy" in case:
        return accuracy(case)
    if case.get("isa"):  # oneDNN reads it at its first primitive, after this
        os.environ["DNNL_MAX_CPU_ISA"] = case["isa"]
    start = time.perf_counter()
    net, x = make_net(case["runtime"], case["prefix"]), make_batch(case["batch"])
    load_s = time.perf_counter() - start
    return dict(h.passes(lambda: net(x), case["warmup"], case["repeat"]), model_load_s=load_s)


def ort_quantization_problem():
    """Why onnxruntime's INT8 quantization cannot run here, or None."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as err:
        return f"onnxruntime.quantization does not import ({err})"
    return None


def export_models(models, workdir, runtimes):
    """Build, initialise and export every model (symbol, params, ONNX, fused, INT8); {model: file sizes}."""
    import mxnet as mx

    from a2gluon.deploy import LoadedModel, build_model, export_model
    from a2gluon.deploy.int8 import CalibrationSet, Int8Options

    sizes = {}
    for model in models:
        mx.random.seed(0)
        net = build_model(model, classes=CLASSES)
        net.initialize(mx.init.MSRAPrelu(), ctx=mx.cpu())
        loaded = LoadedModel(net=net, model=model, num_classes=CLASSES, input_shape=INPUT_SHAPE)
        int8 = None
        if "int8" in runtimes or "onnxruntime-int8" in runtimes:
            images = mx.nd.array(make_batch(CALIB_IMAGES, 2))
            calib = CalibrationSet("seeded standard-normal images", images, 64)
            int8 = Int8Options(calib, "naive", onnx="onnxruntime-int8" in runtimes, check_images=8)
        prefix = os.path.join(workdir, model)
        files = export_model(loaded, prefix, INPUT_SHAPE, onnx=True, fused=True, int8=int8)
        sizes[model] = {k: os.path.getsize(f) for k, f in files.items() if "params" in k or "onnx" in k}
    return sizes


def render(report):
    """The throughput table, the agreement and accuracy tables, and their notes."""
    first, second = report["models"]
    macs, s, env = report["multiply_adds"], report["settings"], report["environment"]
    mac_ratio = macs[first]["macs"] / macs[second]["macs"]
    symbol = {(r["batch"], r.get("isa")): r["results"] for r in report["results"] if r["runtime"] == "symbol"}
    rows = []
    for row in report["results"]:
        res, batch, isa = row["results"], row["batch"], row.get("isa")
        a, b, base = res[first], res[second], symbol.get((batch, isa), {})
        label = RUNTIMES[row["runtime"]] + (f", oneDNN limited to {isa}" if isa else "")
        cells = [label, batch, h.spread(a), h.spread(b)]
        cells += [h.times(h.ratio(b.get("images_per_s"), a.get("images_per_s"))), f"{mac_ratio:.2f}×"]
        speed = [
            h.ratio(res[m].get("images_per_s"), base.get(m, {}).get("images_per_s")) for m in (first, second)
        ]
        rows.append(cells + [h.times(x) for x in speed])
    header = f"runtime|batch|{first} images/s|{second} images/s|{first} / {second} time per image|{first} / "
    header += f"{second} multiply-adds|{first} × fp32 symbol|{second} × fp32 symbol"
    lines = h.table(header, rows, "lrrrrrrr")
    if report.get("agreement"):
        rows = []
        for model, chk in report["agreement"].items():
            rows += [[f"`{model}`", h.fmt(chk, ""), "", "", ""]] if "error" in chk else []
            for runtime, got in chk.get("runtimes", {}).items():
                cells = [f"{chk['max_abs_output']:.3g}", f"{got['max_abs_diff']:.2g}"]
                same = f"{got['top1_same']} of {chk['images']}"
                rows.append([f"`{model}`", RUNTIMES[runtime], *cells, same])
        header = "model (random weights)|runtime|largest \\|logit\\| (Gluon)|− Gluon, max abs|top-1 as Gluon"
        lines += ["", *h.table(header, rows, "llrrr")]
    acc = report.get("accuracy")
    if acc and "error" not in acc:
        fp32, rows = acc["runtimes"]["gluon"]["top1"], []
        for r, v in acc["runtimes"].items():
            gain, agree = 100 * (v["top1"] - fp32), 100 * v["agreement"]
            rows.append([RUNTIMES[r], f"{100 * v['top1']:.2f} %", f"{gain:+.2f}", f"{agree:.2f} %"])
        header = f"runtime (a2_resnet26, digits, {acc['images']} held-out images)|top-1|− fp32 (points)"
        lines += ["", *h.table(header + "|top-1 agreement with fp32", rows, "lrrr")]
    elif acc:
        lines += ["", f"Held-out accuracy: {h.fmt(acc, '')}"]
    cells = [(row["batch"], r.get("repeat")) for row in report["results"] for r in row["results"].values()]
    repeats = "; ".join(f"batch {b}: {n}" for b, n in sorted({(b, h.counts(n)) for b, n in cells if n}))
    bullets = [
        f"{s['warmup']} warm-up step(s) per process, processes × timed steps: {repeats}; multiply-adds "
        f"{macs[first]['macs'] / 1e9:.2f} G / {macs[second]['macs'] / 1e9:.2f} G; onnxruntime "
        f"{env['onnxruntime']} with {env['omp_num_threads']} intra-op threads."
    ]
    if acc and "error" not in acc:
        bullets.append(
            f"Digits model: {acc['epochs']} epochs on {acc['train_images']} images ({acc['train_s']:.0f} s), "
            f"INT8 calibrated on {acc['calib_images']} of them."
        )
    bullets += [f"Not run: {name}: {why}" for name, why in report.get("skipped", {}).items()]
    bullets.append(f"CPU instruction sets: {env.get('cpu_isa', 'unknown')}.")
    return "\n".join(lines + h.notes(__doc__, report, *bullets))


def options(p):
    p.add_argument("--batches", type=h.integers, default=[1, 32], help="batch sizes (default 1,32)")
    p.add_argument("--repeat", type=h.at_least(1), default=20, help="timed steps at batch 1 (default 20)")
    p.add_argument("--warmup", type=h.at_least(0), default=2, help="untimed steps (default 2)")
    p.add_argument("--repeat-batched", type=h.at_least(1), default=5, help="timed steps at larger batches")
    models = ["a2_resnet50", "resnet50"]
    p.add_argument("--models", type=h.names(), default=models, help="the A² model, then its baseline")
    p.add_argument("--runtimes", type=h.names(RUNTIMES), default=list(RUNTIMES), help=",".join(RUNTIMES))
    p.add_argument("--accuracy-epochs", type=h.at_least(1), default=12, help="digits training epochs")
    p.add_argument("--no-accuracy", action="store_true", help="skip the trained model's held-out accuracy")
    isa = "also time the MXNet fp32 and INT8 graphs with oneDNN limited to these instruction sets "
    isa += f"(DNNL_MAX_CPU_ISA; {','.join(ISA_CAPS)}), emulating older CPUs"
    p.add_argument("--isa", type=h.names(ISA_CAPS), default=[], help=isa)
    quick = {"batches": [1], "rounds": 1, "repeat": 2, "warmup": 1, "models": ["a2_resnet26", "resnet26"]}
    return dict(quick, no_accuracy=True)


def bench(run, args):
    import onnx
    import onnxruntime

    from a2gluon.deploy.int8 import cpu_flags, effective_isa, int8_cpu_problem
    from a2gluon.models import list_models
    from a2gluon.profile import profile_model

    if len(args.models) != 2 or set(args.models) - set(list_models()):
        models = ",".join(args.models)
        raise h.UsageError(f"--models: give two registry models, the A² model and its baseline, got {models}")
    problems = {"int8": int8_cpu_problem(), "onnxruntime-int8": ort_quantization_problem()}
    skipped = {runtime: why for runtime, why in problems.items() if why and runtime in args.runtimes}
    if "int8" in skipped and "onnxruntime-int8" in args.runtimes:
        skipped["onnxruntime-int8"] = "needs the INT8 export"
    runtimes = [r for r in args.runtimes if r not in skipped]
    workdir = tempfile.mkdtemp(prefix="a2gluon-inference-")
    try:
        h.say(f"exporting {', '.join(args.models)} to {workdir}")
        exported = export_models(args.models, workdir, runtimes)
        checks = {m: {"check": os.path.join(workdir, m), "runtimes": runtimes} for m in args.models}
        agreement = {m: run.worker(case, f"checking {m}: outputs") for m, case in checks.items()}
        case = {
            "accuracy": os.path.join(workdir, "digits"),
            "epochs": args.accuracy_epochs,
            "runtimes": runtimes,
        }
        label = "training a2_resnet26 on the digits; held-out top-1 of each runtime"
        acc = None if args.no_accuracy else run.worker(case, label)

        def case_of(key):
            batch, runtime, model, isa = key
            case = {"runtime": runtime, "prefix": os.path.join(workdir, model), "batch": batch, "isa": isa}
            return dict(case, repeat=args.repeat if batch == 1 else args.repeat_batched, warmup=args.warmup)

        rows = [(b, r, None) for b in args.batches for r in runtimes]
        onednn = [r for r in runtimes if r in ONEDNN_RUNTIMES]
        rows += [(b, r, isa) for isa in args.isa for b in args.batches for r in onednn]
        rounds = run.rounds([(b, r, m, isa) for b, r, isa in rows for m in args.models], case_of)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = []
    for batch, runtime, isa in rows:
        res = {m: h.combine(rounds[(batch, runtime, m, isa)]) for m in args.models}
        for r in res.values():
            if "median_ms" in r:
                r["images_per_s"] = batch * 1e3 / r["median_ms"]
                r["round_images_per_s"] = [batch * 1e3 / m for m in r["round_median_ms"]]
        results.append({"runtime": runtime, "batch": batch, "isa": isa, "results": res})
    profiles = {m: profile_model(m, INPUT_SHAPE, classes=CLASSES) for m in args.models}
    macs = {m: {"macs": prof.macs, "params": prof.params} for m, prof in profiles.items()}
    report = {"models": args.models, "multiply_adds": macs, "export_bytes": exported, "agreement": agreement}
    report.update(results=results, accuracy=acc, skipped=skipped)
    flags = cpu_flags() or set()
    isa = ", ".join(sorted(f for f in flags if f.startswith("avx512") or f in ("avx2", "fma"))) or "unknown"
    versions = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    return dict(report, environment=dict(versions, cpu_isa=f"{isa} (oneDNN level {effective_isa()})"))


if __name__ == "__main__":
    h.main(__file__, __doc__, options, bench, measure, render, rounds=2)
