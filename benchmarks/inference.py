"""Inference throughput of a2_resnet50 against resnet50 on CPU: Gluon, exported symbol, onnxruntime.

eval_imagenet.py's model step on one in-memory batch (no data loading), 3×224×224 input, 1000
classes, float32, CPU, randomly initialised weights (MSRAPrelu, seed 0) exported once with
`a2gluon.deploy.export_model(..., onnx=True)` and shared by the three runtimes. 'Gluon,
hybridized': the registry model with the exported parameters, static_alloc and static_shape;
'exported symbol': PREFIX-symbol.json + PREFIX-0000.params through `mx.gluon.SymbolBlock.imports`,
hybridized the same way (what `eval_imagenet.py --symbol` runs); 'onnxruntime': `InferenceSession`
on the exported PREFIX.onnx, CPUExecutionProvider, --threads intra-op threads, 1 inter-op thread,
all graph optimisations (that worker does not import MXNet).

- **images/s**: batch / median step time over the timed steps of the fresh processes of a cell
  (the two models alternating); a step ends with the logits in a numpy array. In brackets: the
  lowest and highest of the processes' own medians.
- **time per image** ratio: the first model's time per image over the second's; **multiply-adds**:
  `a2gluon.profile.profile_model` at batch 1.
- **agreement**: one batch of 2 seeded standard-normal images through the three runtimes in one
  process; largest absolute difference of the logits from the Gluon model's, and whether the
  top-1 classes are the same.

Usage: python benchmarks/inference.py [--quick] [--batches 1,32] [--repeat N] [--repeat-batched N]
       [--warmup N] [--rounds N] [--threads N] [--models a2_resnet50,resnet50]
       [--runtimes gluon,symbol,onnxruntime] [--out DIR] [--render]
"""

import os
import shutil
import tempfile
import time

import _harness as h

RUNTIMES = {
    "gluon": "Gluon, hybridized",
    "symbol": "exported symbol (SymbolBlock)",
    "onnxruntime": "onnxruntime (CPU)",
}
INPUT_SHAPE, CLASSES, CHECK_BATCH = (3, 224, 224), 1000, 2


def make_batch(batch, seed=0):
    """A seeded standard-normal batch (what normalised images look like), float32 numpy."""
    import numpy as np

    return np.random.RandomState(seed).standard_normal((batch, *INPUT_SHAPE)).astype(np.float32)


def make_step(runtime, prefix, x, threads):
    """eval_imagenet.py's model step in `runtime` on batch `x`: a call returning numpy logits."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(prefix + ".onnx", options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: x})[0]
    import mxnet as mx

    from a2gluon.deploy import load_gluon_model, load_symbol_model
    from a2gluon.engine.evaluate import forward

    ctx = [mx.cpu()]
    if runtime == "gluon":
        net = load_gluon_model(os.path.basename(prefix), f"{prefix}-0000.params", CLASSES, ctx[0]).net
    else:
        net = load_symbol_model(prefix, 0, ctx=ctx[0]).net
    net.hybridize(static_alloc=True, static_shape=True)  # a2gluon.cli.evaluate.prepare, float32
    data = mx.nd.array(x, ctx=ctx[0])
    mx.nd.waitall()
    return lambda: mx.nd.concat(*forward(net, data, ctx), dim=0).asnumpy()


def measure(case):
    """Passes of one (runtime, model, batch) case, or the agreement of the three runtimes."""
    if "check" in case:
        import numpy as np

        x = make_batch(CHECK_BATCH, seed=1)
        out = {r: make_step(r, case["check"], x, case["threads"])().astype(np.float64) for r in RUNTIMES}
        ref = out["gluon"]
        return {
            "max_abs_output": float(np.abs(ref).max()),
            "max_abs_diff": {r: float(np.abs(out[r] - ref).max()) for r in ("symbol", "onnxruntime")},
            "top1_agrees": {
                r: bool((out[r].argmax(1) == ref.argmax(1)).all()) for r in ("symbol", "onnxruntime")
            },
        }
    start = time.perf_counter()
    step = make_step(case["runtime"], case["prefix"], make_batch(case["batch"]), case["threads"])
    load_s = time.perf_counter() - start
    return dict(h.passes(step, case["warmup"], case["repeat"]), model_load_s=load_s)


def export_models(models, workdir):
    """Build, initialise and export every model (symbol, params, ONNX); {model: file sizes}."""
    import mxnet as mx

    from a2gluon.deploy import LoadedModel, build_model, export_model

    sizes = {}
    for model in models:
        mx.random.seed(0)
        net = build_model(model, classes=CLASSES)
        net.initialize(mx.init.MSRAPrelu(), ctx=mx.cpu())
        loaded = LoadedModel(net=net, model=model, num_classes=CLASSES, input_shape=INPUT_SHAPE)
        files = export_model(loaded, os.path.join(workdir, model), INPUT_SHAPE, onnx=True)
        sizes[model] = {kind: os.path.getsize(files[kind]) for kind in ("symbol", "params", "onnx")}
    return sizes


def render(report):
    """The throughput table, the agreement table and their notes."""
    first, second = report["models"]
    macs, s, env = report["multiply_adds"], report["settings"], report["environment"]
    mac_ratio = macs[first]["macs"] / macs[second]["macs"]

    rows = []
    for row in report["results"]:
        a, b = row["results"][first], row["results"][second]
        ratio = h.times(h.ratio(b.get("images_per_s"), a.get("images_per_s")))
        rows.append(
            [RUNTIMES[row["runtime"]], row["batch"], h.spread(a), h.spread(b), ratio, f"{mac_ratio:.2f}×"]
        )
    header = ["runtime", "batch", f"{first} images/s", f"{second} images/s"]
    header += [f"{first} / {second} time per image", f"{first} / {second} multiply-adds"]
    lines = h.table(header, rows, "lrrrrr")
    if report["agreement"]:
        rows = []
        for model, chk in report["agreement"].items():
            if "error" in chk:
                rows.append([f"`{model}`", h.fmt(chk, ""), "", "", ""])
                continue
            diff, agree = chk["max_abs_diff"], chk["top1_agrees"]
            cells = [f"{chk['max_abs_output']:.3g}", f"{diff['symbol']:.2g}", f"{diff['onnxruntime']:.2g}"]
            rows.append([f"`{model}`", *cells, "yes" if all(agree.values()) else f"no: {agree}"])
        header = ["model", "largest \\|logit\\| (Gluon)", "symbol − Gluon, max abs"]
        lines += ["", *h.table(header + ["onnxruntime − Gluon, max abs", "top-1 agrees"], rows, "lrrrl")]
    cells = [(row["batch"], r.get("repeat")) for row in report["results"] for r in row["results"].values()]
    repeats = "; ".join(f"batch {b}: {n}" for b, n in sorted({(b, h.counts(n)) for b, n in cells if n}))
    settings = (
        f"{s['warmup']} warm-up step(s) per process, processes × timed steps: {repeats}; multiply-adds "
    )
    settings += f"{macs[first]['macs'] / 1e9:.2f} G / {macs[second]['macs'] / 1e9:.2f} G; onnxruntime "
    settings += f"{env['onnxruntime']} with {env['omp_num_threads']} intra-op threads."
    return "\n".join(lines + h.notes(__doc__, report, settings))


def main(argv=None):
    p = h.parser(__doc__, rounds=2)
    p.add_argument("--batches", type=h.integers, default=[1, 32], help="batch sizes (default 1,32)")
    p.add_argument("--repeat", type=h.at_least(1), default=20, help="timed steps at batch 1 (default 20)")
    p.add_argument("--repeat-batched", type=h.at_least(1), default=5, help="timed steps at larger batches")
    p.add_argument("--warmup", type=h.at_least(0), default=2, help="untimed steps (default 2)")
    p.add_argument(
        "--models",
        type=h.names(),
        default=["a2_resnet50", "resnet50"],
        help="the A² model, then its baseline",
    )
    p.add_argument("--runtimes", type=h.names(RUNTIMES), default=list(RUNTIMES), help=",".join(RUNTIMES))
    quick = {"batches": [1], "rounds": 1, "repeat": 2, "warmup": 1, "models": ["a2_resnet26", "resnet26"]}
    args = h.parse(p, argv, "inference", measure, render, quick)
    if args is None:
        return 0
    import onnx
    import onnxruntime

    from a2gluon.models import list_models
    from a2gluon.profile import profile_model

    if len(args.models) != 2 or set(args.models) - set(list_models()):
        p.error(
            f"--models: give two registry models, the A² model and its baseline, got {','.join(args.models)}"
        )
    run = h.Run(__file__, args)
    workdir = tempfile.mkdtemp(prefix="a2gluon-inference-")
    try:
        h.say(f"exporting {', '.join(args.models)} to {workdir}")
        exported = export_models(args.models, workdir)
        agreement = {}
        if args.runtimes == list(RUNTIMES):
            for model in args.models:
                case = {"check": os.path.join(workdir, model), "threads": args.threads}
                agreement[model] = run.worker(case, f"checking {model}: outputs of the three runtimes")

        def case_of(key):
            batch, runtime, model = key
            repeat = args.repeat if batch == 1 else args.repeat_batched
            case = {"runtime": runtime, "prefix": os.path.join(workdir, model), "batch": batch}
            return dict(case, repeat=repeat, warmup=args.warmup, threads=args.threads)

        keys = [(b, r, m) for b in args.batches for r in args.runtimes for m in args.models]
        rounds = run.rounds(keys, case_of)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = []
    for batch in args.batches:
        for runtime in args.runtimes:
            res = {m: h.combine(rounds[(batch, runtime, m)]) for m in args.models}
            for r in res.values():
                if "median_ms" in r:
                    r["images_per_s"] = batch * 1e3 / r["median_ms"]
                    r["round_images_per_s"] = [batch * 1e3 / m for m in r["round_median_ms"]]
            results.append({"runtime": runtime, "batch": batch, "results": res})
    profiles = {m: profile_model(m, INPUT_SHAPE, classes=CLASSES) for m in args.models}
    macs = {m: {"macs": prof.macs, "params": prof.params} for m, prof in profiles.items()}
    report = {"models": args.models, "multiply_adds": macs, "export_bytes": exported, "agreement": agreement}
    report.update(
        results=results, environment={"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    )
    run.write("inference", report, render)
    return 0


if __name__ == "__main__":
    h.cli(main)
