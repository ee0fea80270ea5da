"""Left against right association of one double attention block: forward time and peak memory.

DoubleAttention forward pass, batch 1, float32, CPU, inference mode, hybridized with static_alloc
and static_shape, m = n = c / 4. 'left' = (A·softmax(B)ᵀ)·softmax(V) with an m × n intermediate
(the paper's order); 'right' = A·(softmax(B)ᵀ·softmax(V)) with an L × L intermediate (L =
positions, H·W or T·H·W). Each cell: fresh processes, left and right alternating.

- **ms**: median of all the processes' timed forward passes, after the warm-up passes.
- **peak MiB**: peak RSS of a process after the passes minus its peak RSS just before the first
  one (block built, input allocated): the extra memory the forward pass needed at its peak,
  activations and MXNet's memory pool included; the largest over the processes.
- **intermediate**: the association's intermediate per sample in float32: m·n·4 bytes (left),
  L·L·4 bytes (right). The paper's video example quotes about 1 MB for left and over 2 GB for
  right; 1 MiB is 512·512·4 bytes (m = n = 512), with m = n = 128 (reduction 4) it is 64 KiB.
"""

import math

import _harness as h
from blocks import REDUCTION, measure

CONFIGS = {"image": ("image conv4", 1024, (14, 14)), "video": ("video (paper's example)", 512, (32, 28, 28))}
ASSOCIATIONS = ("left", "right")


def describe(name):
    """Configuration `name` with its sizes: m = n, L and the intermediates' float32 bytes."""
    label, channels, spatial = CONFIGS[name]
    m, positions = channels // REDUCTION, math.prod(spatial)
    return dict(name=name, label=label, channels=channels, spatial=list(spatial), m=m, n=m, L=positions,
                intermediate_bytes={"left": m * m * 4, "right": positions * positions * 4})  # fmt: skip


def human_bytes(count):
    """`count` bytes in binary units, three significant digits."""
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} GiB"


def render(report):
    """The table and its notes."""
    rows, repeats = [], []
    for cfg in report["configs"]:
        left, right = cfg["results"]["left"], cfg["results"]["right"]
        size = f"{cfg['channels']} × {'×'.join(map(str, cfg['spatial']))}"
        cells = [cfg["label"], size, f"{cfg['L']:,}", cfg["m"]]
        for key, spec in (("median_ms", "{:.1f}"), ("peak_mib", "{:.0f}")):
            ratio = h.times(h.ratio(right.get(key), left.get(key)), 1)
            cells += [h.fmt(left, key, spec), h.fmt(right, key, spec), ratio]
        rows.append(cells + [human_bytes(cfg["intermediate_bytes"][a]) for a in ASSOCIATIONS])
        done = {a: r for a, r in cfg["results"].items() if "repeat" in r}
        repeats += [f"{cfg['label']} {a}: {h.counts(r['repeat'])}" for a, r in done.items()]
    header = "config|input (C × spatial)|L|m = n|left ms|right ms|right/left time|left peak MiB"
    header += "|right peak MiB|right/left peak|intermediate left|intermediate right"
    s = report["settings"]
    passes = f"{s['rounds']} fresh processes per cell, {s['warmup']} warm-up passes each, processes × timed "
    passes += f"passes: {'; '.join(repeats)}."
    return "\n".join(h.table(header, rows) + h.notes(__doc__, report, passes))


def options(p):
    h.pass_options(p, repeat=20, warmup=2, slow_repeat=5)
    p.add_argument("--configs", type=h.names(CONFIGS), default=list(CONFIGS), help="image,video (default)")
    return {"configs": ["image"], "rounds": 1, "repeat": 3, "warmup": 1}


def bench(run, args):
    keys = [(name, assoc) for name in args.configs for assoc in ASSOCIATIONS]
    shapes = {name: [CONFIGS[name][1], *CONFIGS[name][2]] for name in args.configs}
    case = h.pass_case(args, kind="a2", mode="forward")
    rounds = run.rounds(keys, lambda key: dict(case, shape=shapes[key[0]], association=key[1]))
    results = {name: {a: h.combine(rounds[(name, a)]) for a in ASSOCIATIONS} for name in args.configs}
    return {"configs": [dict(describe(n), results=results[n]) for n in args.configs]}


if __name__ == "__main__":
    h.main(__file__, __doc__, options, bench, measure, render, rounds=3)
