"""Parameter and multiply-add counts against known figures and exact formulas."""

import json
import subprocess
import sys

import mxnet as mx
import pytest

from a2gluon.cli.profile import main
from a2gluon.nn import DoubleAttention, NonLocal
from a2gluon.profile import profile_block, profile_model


def within(value, target, tolerance):
    return abs(value - target) <= tolerance * target


@pytest.mark.parametrize(
    "name, params_m, gmacs",
    [
        ("resnet50_v1b", 25.6, 4.1),  # Gluon-CV / torchvision figures
        ("resnet152_v1b", 60.2, 11.5),
        ("a2_resnet50", 33.0, 6.5),  # the paper: "6.5 GFLOPs and 33.0 M parameters"
    ],
)
def test_known_figures(name, params_m, gmacs):
    prof = profile_model(name)
    assert within(prof.params, params_m * 1e6, 0.015), prof.params
    assert within(prof.macs, gmacs * 1e9, 0.015), prof.macs


def test_a2_resnet50_3d_matches_the_papers_kinetics_model():
    prof = profile_model("a2_resnet50_3d")  # paper: 40.8 GFLOPs at 8 x 224 x 224
    assert within(prof.macs, 40.8e9, 0.015), prof.macs


def test_exact_resnet50_v1b_params():
    # every trained parameter of the Gluon model, counted directly
    from a2gluon.models import get_model

    net = get_model("resnet50_v1b")
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))  # Gluon-CV defers shapes to the first forward
    direct = sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")
    assert profile_model("resnet50_v1b").params == direct == 25557032


@pytest.mark.parametrize("association", ["left", "right"])
@pytest.mark.parametrize("dims, spatial", [(2, (14, 14)), (3, (4, 7, 7))])
def test_double_attention_block_macs(association, dims, spatial):
    c, m, n = 64, 16, 8
    L = 1
    for s in spatial:
        L *= s
    prof = profile_block(DoubleAttention(c, m=m, n=n, dims=dims, association=association), (c,) + spatial)
    convs = L * (c * m + 2 * c * n + m * c)
    products = 2 * m * n * L if association == "left" else n * L * L + m * L * L
    assert prof.macs == convs + products
    # phi, theta, rho with bias, extend without, BatchNorm gamma and beta
    assert prof.params == (c * m + m) + 2 * (c * n + n) + m * c + 2 * c


def test_nonlocal_block_macs():
    c, d, L = 32, 8, 36
    prof = profile_block(NonLocal(c, inner=d), (c, 6, 6))
    assert prof.macs == L * 4 * c * d + 2 * d * L * L


def test_per_layer_table_adds_up():
    prof = profile_model("a2_resnet26", (3, 112, 112))
    assert sum(layer.macs for layer in prof.layers) == prof.macs
    assert sum(layer.params for layer in prof.layers) == prof.params
    ops = {layer.op for layer in prof.layers}
    assert {"Convolution", "FullyConnected", "batch_dot"} <= ops


def test_cli_json(capsys):
    assert main(["a2_resnet26", "--input-shape", "3,112,112", "--json", "--classes", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "a2_resnet26"
    assert out["input_shape"] == [3, 112, 112]
    assert isinstance(out["params"], int) and isinstance(out["macs"], int)
    assert out["params"] == profile_model("a2_resnet26", (3, 112, 112), classes=10).params


def test_cli_options_change_the_count(capsys):
    main(["resnet26", "--json"])
    base = json.loads(capsys.readouterr().out)
    main(
        [
            "resnet26",
            "--json",
            "--attention",
            "a2",
            "--blocks",
            "conv4:2,conv3:1",
            "--reduction",
            "2",
        ]
    )
    more = json.loads(capsys.readouterr().out)
    # two blocks, m = n = c/2: 2c^2 + 3c/2 + 2c parameters each (c = 512 at conv4, 256 at conv3)
    expected = sum(2 * c * c + 3 * c // 2 + 2 * c for c in (512, 256))
    assert more["params"] - base["params"] == expected
    main(["resnet26_3d", "--json", "--input-shape", "3,8,64,64", "--per-layer"])
    video = json.loads(capsys.readouterr().out)
    assert video["input_shape"] == [3, 8, 64, 64] and video["layers"]


def test_cli_errors_are_one_line():
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "a2gluon",
            "profile",
            "resnet26",
            "--blocks",
            "conv9:1",
            "--attention",
            "a2",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "a2gluon profile: error: blocks: 'conv9:1' names no stage of this network; "
        "stages are conv2, conv3, conv4, conv5"
    )
    assert "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "a2gluon", "profile", "nosuchnet"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "unknown model 'nosuchnet'" in run.stderr
