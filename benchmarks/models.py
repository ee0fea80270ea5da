"""Model cost on CPU: forward and forward+backward time per image, against multiply-adds.

The paper's efficiency claim in wall time: ResNet-50 with five A² blocks (a2_resnet50) beats
ResNet-152 with over 40 % fewer FLOPs. CPU, float32, 3×224×224, 1000 classes, random
initialisation, models hybridized with static_alloc and static_shape. **forward**: inference
mode; **fwd+bwd**: `autograd.record()` forward and `backward()` of the summed outputs, no
optimizer step. Each model runs in fresh processes (every other round in reverse order).

- **ms/image**: the model's median pass over the batch. **ratio**: median over the passes of the
  pass's time over that of the adjacent pass of a `resnet50` built in the same process and timed
  alternately with it, so that both see the same machine load (timed in separate processes, the
  ratios were off by 2× either way on a shared machine); a2_resnet50 / resnet152_v1b is the ratio
  of the two ratios. **MAC ratio**: multiply-adds (`a2gluon.profile.profile_model`, batch 1)
  over `resnet50`'s.
- **peak RSS**: the process's peak resident set size after the model's forward warm-up passes
  and after its fwd+bwd ones, before the paired resnet50 is built (parameters, gradients,
  activations and MXNet's memory pool).
"""

import statistics

import _harness as h

MODELS = ("resnet50", "a2_resnet50", "resnet50_v1b", "resnet152_v1b", "se_resnet50_v1")
BASELINE, IMAGE, PHASES = "resnet50", (3, 224, 224), ("forward", "train")  # train = forward+backward
MAC_TOLERANCE, RESNET152_GOAL = 0.10, 0.65


def build(name, batch):
    """Model `name` (Xavier initialisation) on a random batch: its forward and forward+backward passes."""
    import mxnet as mx

    from a2gluon.models import get_model

    return h.net_runs(get_model(name, classes=1000), (batch, *IMAGE), mx.init.Xavier())


def measure(case):
    """One model's warm-up passes and peak RSS, then its passes timed alternately with resnet50's."""
    runs = build(case["model"], case["batch"])
    result = {phase: h.passes(runs[phase], max(case["warmup"], 1), 0) for phase in PHASES}
    base = build(BASELINE, case["batch"]) if case["model"] != BASELINE else None
    for phase in PHASES:
        pair = {"own": runs[phase], "baseline": base[phase]} if base else {"own": runs[phase]}
        timed = h.interleave(pair, case["repeat"], warmup=max(case["warmup"], 1) if base else 0)
        result[phase].update(timings_ms=timed["own"], baseline_timings_ms=timed.get("baseline", timed["own"]))
    return result


def paired(result, phase):
    """Each pass's time over the adjacent resnet50 pass's, all processes pooled."""
    res = result[phase]
    return [a / b for a, b in zip(res["timings_ms"], res["baseline_timings_ms"])]


def render(report):
    """The table, the goals and the notes."""
    res, macs, s = report["results"], report["macs"], report["settings"]
    done = {n: r for n, r in res.items() if "error" not in r}
    ratio = {n: {p: statistics.median(paired(r, p)) for p in PHASES} for n, r in done.items()}

    def vs(name, phase, other=BASELINE):  # a ratio of ratios: every model is paired with resnet50
        return h.ratio(ratio.get(name, {}).get(phase), ratio.get(other, {}).get(phase))

    rows = []
    for name in report["models"]:
        mac_ratio = macs[name] / macs[BASELINE]
        cells = [f"`{name}`", f"{macs[name] / 1e9:.2f}", f"{mac_ratio:.2f}×"]
        if "error" in res[name]:
            rows.append(cells + [h.fmt(res[name], "")] + [""] * 6)
            continue
        for phase in PHASES:
            cells += [f"{res[name][phase]['median_ms'] / s['batch']:.1f}", h.times(vs(name, phase))]
        cells.append("n/a" if vs(name, "train") is None else f"{vs(name, 'train') / mac_ratio:.2f}")
        rows.append(cells + [f"{res[name][p]['peak_rss_mib']:.0f}" for p in PHASES])
    header = "model|G multiply-adds|MAC ratio|forward ms/image|forward ratio|fwd+bwd ms/image|fwd+bwd ratio"
    header += "|fwd+bwd ratio / MAC ratio|peak RSS forward MiB|peak RSS fwd+bwd MiB"
    lines = h.table(header.split("|"), rows, "lrrrrrrrrr") + [""]
    a2 = vs("a2_resnet50", "train")
    if a2 is not None:
        mac_ratio, passes = macs["a2_resnet50"] / macs[BASELINE], paired(res["a2_resnet50"], "train")
        excess = a2 / mac_ratio - 1
        lines.append(
            f"- **Goal 1** (a2_resnet50 / resnet50 fwd+bwd time within {MAC_TOLERANCE:.0%} of the "
            f"multiply-add ratio): {a2:.2f}× against {mac_ratio:.2f}×, {excess:+.0%} — "
            f"**{'met' if abs(excess) <= MAC_TOLERANCE else 'missed'}** (forward: "
            f"{vs('a2_resnet50', 'forward'):.2f}×; the fwd+bwd passes' own ratios range "
            f"{min(passes):.2f}–{max(passes):.2f}×)."
        )
    vs152 = vs("a2_resnet50", "train", "resnet152_v1b")
    if vs152 is not None:
        lines.append(
            f"- **Goal 2** (a2_resnet50 at most {RESNET152_GOAL:.2f}× resnet152_v1b's fwd+bwd time): "
            f"{vs152:.2f}× (multiply-adds {macs['a2_resnet50'] / macs['resnet152_v1b']:.2f}×) — "
            f"**{'met' if vs152 <= RESNET152_GOAL else 'missed'}** (forward: "
            f"{vs('a2_resnet50', 'forward', 'resnet152_v1b'):.2f}×)."
        )
    settings = f"Batch {s['batch']}; passes per model: {s['rounds']} × ({s['warmup']} warm-up + "
    settings += f"{s['repeat']} timed)."
    return "\n".join(lines + h.notes(__doc__, report, settings))


def options(p):
    p.add_argument("--batch", type=h.at_least(1), default=16, help="batch size (default 16)")
    h.pass_options(p, repeat=3, warmup=1, what="passes per phase")
    p.add_argument("--models", type=h.names(), default=list(MODELS), help=f"default {','.join(MODELS)}")
    return {"batch": 2, "repeat": 1, "warmup": 1, "rounds": 1, "models": ["resnet50", "a2_resnet50"]}


def bench(run, args):
    from a2gluon.models import list_models
    from a2gluon.profile import profile_model

    names = args.models if BASELINE in args.models else [BASELINE, *args.models]  # every ratio is to it
    if set(names) - set(list_models()):
        raise h.UsageError(f"--models: unknown {', '.join(sorted(set(names) - set(list_models())))}")
    rounds = run.rounds(names, lambda name: h.pass_case(args, batch=args.batch, model=name))
    results = {}
    for name in names:
        done = [r for r in rounds[name] if "error" not in r]
        results[name] = {"processes": rounds[name]} if done else h.combine(rounds[name])
        for phase in PHASES if done else ():
            results[name][phase] = h.combine([r[phase] for r in done])
            del results[name][phase]["processes"]
            for key in ("timings_ms", "baseline_timings_ms"):  # pooled, for the pass-by-pass ratios
                results[name][phase][key] = [t for r in done for t in r[phase][key]]
    macs = {name: profile_model(name, IMAGE).macs for name in names}
    return {"models": names, "macs": macs, "results": results}


if __name__ == "__main__":
    h.main(__file__, __doc__, options, bench, measure, render, rounds=2)
