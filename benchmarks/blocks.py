"""A² against Non-local against no block at the stages of resnet26_3d, and a sweep over L.

`DoubleAttention(c, reduction=4, dims=3)` against `NonLocal(c, reduction=4, dims=3)` (Embedded
Gaussian, no sub-sampling: the paper's comparison) on the outputs of the conv2, conv3 and conv4
stages of `resnet26_3d` for a 3×16×112×112 clip (checked against the model at start-up), batch 1,
float32, CPU, hybridized (static_alloc, static_shape). No block = identity. The sweep: 2-D inputs
with 256 channels, H = W from 8 to 96, forward, one process per point; the slopes are least-squares
fits of log(time) against log(L), at large L and over all points (linear = 1, quadratic = 2).

- **train**: forward + backward (input and parameter gradients); **forward**: inference mode.
- **ms**: median of all timed passes of the fresh processes of a cell (one process when a
  warm-up pass took over 5 s; fewer timed passes when one took over 1 s).
- **peak MiB**: peak RSS after the passes minus peak RSS before the first one (block built,
  input allocated): the extra memory at the peak, including MXNet's pool; the largest over the
  processes. The Non-local block at conv2 holds 25,088² float32 scores: 2.35 GiB per matrix; a
  case whose estimate (2 such matrices forward, 4 training, plus 1 GiB) exceeds MemAvailable is
  not run.
"""

import math

import _harness as h

MODEL, MODEL_INPUT, STAGES = "resnet26_3d", (3, 16, 112, 112), ("conv2", "conv3", "conv4")
KINDS, MODES = {"a2": "A²", "nonlocal": "Non-local"}, ("train", "forward")
REDUCTION, SWEEP_CHANNELS, FIT_FROM, GOAL, VERY_SLOW_MS = 4, 256, 1024, 20.0, 5000.0


def measure(case):
    """Passes of one attention block (kind a2 or nonlocal, batch 1, reduction 4) on one input
    shape (C, spatial...), forward + backward (mode train) or forward (mode forward); also
    benchmarks/block.py's, which gives the A² block's association."""
    from a2gluon.nn import DoubleAttention, NonLocal

    shape, options = case["shape"], {"association": case["association"]} if "association" in case else {}
    block = (DoubleAttention if case["kind"] == "a2" else NonLocal)(
        shape[0], reduction=REDUCTION, dims=len(shape) - 1, **options
    )
    one_pass = h.net_runs(block, (1, *shape), input_grad=True)[case["mode"]]
    return h.passes(one_pass, case["warmup"], case["repeat"], case["slow_repeat"])


def stage_shapes():
    """The output shape (without batch) of each stage of MODEL for MODEL_INPUT, from the model."""
    import mxnet as mx

    from a2gluon.models import get_model

    sym, shapes = mx.sym.var("data"), {}
    for child in get_model(MODEL, classes=10).features._children.values():
        sym = child(sym)
        shapes[child.name.rsplit("_", 1)[-1]] = list(sym.infer_shape(data=(1, *MODEL_INPUT))[1][0][1:])
    return shapes


def skip_reason(shape, mode):
    """Why the Non-local case of (shape, mode) is not run: its estimate (2 L × L float32 matrices
    forward, 4 training, plus 1 GiB) exceeds MemAvailable; None when it fits."""
    need = (2 if mode == "forward" else 4) * math.prod(shape[1:]) ** 2 * 4 + 2**30
    with open("/proc/meminfo", encoding="ascii") as handle:
        avail = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
    why = f"not run: needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
    return why if need > avail else None


def fit_slope(points):
    """Least-squares slope of log(ms) against log(L) over [(L, ms)]; None for fewer than 2 points."""
    import numpy as np

    return float(np.polyfit(*np.log(np.array(points)).T, 1)[0]) if len(points) > 1 else None


def plot_sweep(pts, sweep, path):
    """The sweep's times `pts` ({kind: [(L, ms)]}) against L, log-log, one line per block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for kind, marker in (("a2", "o"), ("nonlocal", "s")):
        slope = sweep["slopes"][kind]["large_L"]
        label = f"{KINDS[kind]} (slope {slope:.2f} for L ≥ {sweep['fit_from']:,})" if slope else KINDS[kind]
        ax.loglog([p[0] for p in pts[kind]], [p[1] for p in pts[kind]], marker=marker, label=label)
    ax.set(xlabel="positions L = H·W", ylabel="forward time, ms (median)")
    ax.set_title(f"{SWEEP_CHANNELS}-channel block, reduction {REDUCTION}, batch 1, CPU")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def ms(result):
    """A time cell: ms, thousands separated from 1 s on."""
    return h.fmt(result, "median_ms", "{:.1f}" if result.get("median_ms", 0) < 1000 else "{:,.0f}")


def nl_over_a2(results, key):
    """The Non-local block's value over A²'s as a table cell."""
    value = h.ratio(results["nonlocal"].get(key), results["a2"].get(key))
    return "—" if value is None else h.times(value, 0 if value >= 10 else 1)


def render(report):
    """The stage table, the goal, the sweep table and slopes, and their notes."""
    s, rows = report["settings"], []
    for st in report["stages"]:
        shape = st["shape"]
        name = f"{st['stage']} ({shape[0]} × {'×'.join(map(str, shape[1:]))})"
        for mode in s["modes"]:
            res = st["results"][mode]
            cells = [name, f"{st['L']:,}", mode, f"0 ms, input {math.prod(shape) * 4 / 2**20:.1f} MiB"]
            cells += [ms(res["a2"]), ms(res["nonlocal"]), nl_over_a2(res, "median_ms")]
            peaks = [h.fmt(res[k], "peak_mib", "{:.0f}") for k in KINDS]
            rows.append(cells + peaks + [nl_over_a2(res, "peak_mib")])
    conv2 = next((st["results"] for st in report["stages"] if st["stage"] == "conv2"), {})
    mode = next((m for m in MODES if "median_ms" in conv2.get(m, {}).get("nonlocal", {})), None)
    value = mode and h.ratio(conv2[mode]["nonlocal"]["median_ms"], conv2[mode]["a2"].get("median_ms"))
    goal = f"{value:.0f}× ({mode}): {'met' if value >= GOAL else 'NOT met'}" if value else "not measured"
    header = "stage (C × T×H×W)|L|mode|no block|A² ms|Non-local ms|NL / A² time|A² peak MiB"
    goal = f"at least {GOAL:.0f}× cheaper than the Non-local block there (training): {goal}."
    lines = h.table(header + "|Non-local peak MiB|NL / A² peak", rows, "lrllrrrrrr")
    lines += ["", f"Goal: the A² block at conv2 of {MODEL} {goal}"]
    sw = report.get("sweep")
    if sw:
        rows = [[p["size"], f"{p['L']:,}", ms(p["a2"]), ms(p["nonlocal"]), nl_over_a2(p, "median_ms")]
                for p in sw["points"]]  # fmt: skip
        slope = {k: ["n/a" if v is None else f"{v:.2f}" for v in sw["slopes"][k].values()] for k in KINDS}
        slopes = {k: " / ".join(values) for k, values in slope.items()}
        lines += [
            "",
            f"Sweep over the number of positions (forward, batch 1, {SWEEP_CHANNELS} channels, 2-D, H = W):",
            "",
            *h.table(["H = W", "L", "A² ms", "Non-local ms", "NL / A²"], rows, "rrrrr"),
            "",
            f"Fitted log-log slopes of time over L (L ≥ {sw['fit_from']:,} / all points): A² {slopes['a2']}, "
            f"Non-local {slopes['nonlocal']}.",
            "",
            "![A² and Non-local forward time against L](results/blocks_sweep.png)",
        ]
    passes = f"{s['rounds']} process(es) per cell, {s['warmup']} warm-up pass(es), then {s['repeat']} timed "
    return "\n".join(lines + h.notes(__doc__, report, passes + f"passes ({s['slow_repeat']} when slow)."))


def options(p):
    h.pass_options(p, repeat=10, warmup=1, slow_repeat=3)
    p.add_argument("--stages", type=h.names(STAGES), default=list(STAGES), help="subset of conv2,conv3,conv4")
    p.add_argument("--modes", type=h.names(MODES), default=list(MODES), help="train,forward (default both)")
    p.add_argument("--sweep", type=h.integers, default=[8, 12, 16, 24, 32, 48, 64, 96], help="H = W values")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep over L")
    p.add_argument("--fit-from", type=h.at_least(2), default=FIT_FROM, help="least L of the large-L fit")
    return {"stages": ["conv4"], "rounds": 1, "repeat": 2, "slow_repeat": 1, "sweep": [8, 16]}


def bench(run, args):
    shapes = stage_shapes()
    notes = {(stage, mode): skip_reason(shapes[stage], mode) for stage in args.stages for mode in args.modes}

    def skip(key, done):  # too large for the memory, or so slow that one process is enough
        slow = done and done[0].get("warmup_ms") and done[0]["warmup_ms"][-1] > VERY_SLOW_MS
        return bool(slow or (key[2] == "nonlocal" and notes.get(key[:2])))

    def case_of(key):  # a stage's output shape, or a square 2-D input of the sweep
        shape = shapes[key[0]] if key[0] in STAGES else (SWEEP_CHANNELS, key[0], key[0])
        return h.pass_case(args, shape=shape, mode=key[1], kind=key[2])

    keys = [(st, m, k) for st in args.stages for m in args.modes for k in KINDS]
    rounds = run.rounds(keys, case_of, skip=skip)
    stages = []
    for st in args.stages:
        results = {m: {k: h.combine(rounds[(st, m, k)]) for k in KINDS} for m in args.modes}
        for m in args.modes:
            results[m]["nonlocal"] = {"note": notes[(st, m)]} if notes[(st, m)] else results[m]["nonlocal"]
        stages.append({"stage": st, "shape": shapes[st], "L": math.prod(shapes[st][1:]), "results": results})
    if args.no_sweep:
        return {"stages": stages, "sweep": None}
    rounds = run.rounds([(n, "forward", k) for n in args.sweep for k in KINDS], case_of, count=1)
    done = {key: h.combine(results) for key, results in rounds.items()}
    points = [dict(size=n, L=n * n, **{k: done[(n, "forward", k)] for k in KINDS}) for n in args.sweep]
    pts = {k: [(p["L"], p[k]["median_ms"]) for p in points if "median_ms" in p[k]] for k in KINDS}
    large = {k: [q for q in pts[k] if q[0] >= args.fit_from] for k in KINDS}
    slopes = {k: {"large_L": fit_slope(large[k]), "all": fit_slope(pts[k])} for k in KINDS}
    sweep = {"channels": SWEEP_CHANNELS, "fit_from": args.fit_from, "points": points, "slopes": slopes}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        plot_sweep(pts, sweep, args.out / "blocks_sweep.png")
    return {"stages": stages, "sweep": sweep}


if __name__ == "__main__":
    h.main(__file__, __doc__, options, bench, measure, render, rounds=2)
