"""The registry, the paper's networks, attention placement and the Gluon-CV baselines."""

import mxnet as mx
import numpy as np
import pytest

from a2gluon.models import default_input_shape, get_model, list_models, model_spec
from a2gluon.nn import DoubleAttention, NonLocal

PAPER_MODELS = [
    "resnet50",
    "a2_resnet50",
    "resnet26",
    "a2_resnet26",
    "resnet26_3d",
    "a2_resnet26_3d",
    "resnet29_3d",
    "resnet50_3d",
    "a2_resnet50_3d",
]
BASELINES = ["resnet50_v1b", "resnet152_v1b", "se_resnet50_v1"]
SLOW = {"resnet50_3d", "a2_resnet50_3d", "resnet152_v1b", "resnet29_3d", "a2_resnet26_3d"}


def attention_blocks(net, cls=(DoubleAttention, NonLocal)):
    found = []

    def visit(block):
        if isinstance(block, cls):
            found.append(block)
        for child in block._children.values():
            visit(child)

    visit(net)
    return found


def test_registry_lists_every_model():
    assert set(PAPER_MODELS + BASELINES) <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet51'; known models: .*a2_resnet50"):
        get_model("resnet51")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in PAPER_MODELS + BASELINES],
)
def test_forward_at_paper_input_size(name):
    net = get_model(name, classes=10)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(1,) + default_input_shape(name))
    y = net(x)
    assert y.shape == (1, 10)
    assert np.isfinite(y.asnumpy()).all()


def small_input(name, batch=2):
    """A batch in `name`'s own layout at a reduced size: images at 64 x 64, clips of 4 frames at
    32 x 32 (resnet50_3d's 32x downsampling leaves 1 x 1 before pooling)."""
    spec = model_spec(name)
    channels = spec.input_shape[0]
    return (batch, channels, 4, 32, 32) if spec.is_video else (batch, channels, 64, 64)


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_a_backward_pass(name):
    """Forward and backward in training mode, hybridized: every trained parameter receives a
    finite gradient (the gradients start as NaN, so one that backward never writes shows)."""
    net = get_model(name, classes=3)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    x = mx.nd.random.uniform(-1, 1, shape=small_input(name))
    net(x)  # Gluon-CV's baselines create their parameters on the first forward
    params = [p for p in net.collect_params().values() if p.grad_req != "null"]
    for p in params:
        p.grad()[:] = np.nan
    with mx.autograd.record():
        y = net(x)
        loss = (y * mx.nd.array([[1.0, -2.0, 0.5], [-1.0, 0.3, 2.0]])).sum()
    loss.backward()
    assert y.shape == (2, 3)
    bad = [p.name for p in params if not np.isfinite(p.grad().asnumpy()).all()]
    assert not bad, f"{len(bad)} of {len(params)} parameters without a finite gradient: {bad[:5]}"
    assert any(np.abs(p.grad().asnumpy()).max() > 0 for p in params)


@pytest.mark.parametrize(
    "name,shape", [("a2_resnet26", (2, 3, 64, 64)), ("a2_resnet26_3d", (1, 3, 4, 32, 32))]
)
def test_hybridized_equals_imperative(name, shape):
    net = get_model(name, classes=7)
    net.initialize(mx.init.Xavier())
    for block in attention_blocks(net):  # make the attention branches count
        block.norm.gamma.set_data(mx.nd.ones_like(block.norm.gamma.data()))
    x = mx.nd.random.uniform(shape=shape)
    eager = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), eager, rtol=1e-4, atol=1e-5)


def test_a2_resnet50_places_five_blocks_at_conv3_and_conv4():
    net = get_model("a2_resnet50")
    assert net.blocks == ["conv3:2", "conv3:4", "conv4:2", "conv4:4", "conv4:6"]
    found = attention_blocks(net)
    assert [type(b) for b in found] == [DoubleAttention] * 5
    assert [b.in_channels for b in found] == [512, 512, 1024, 1024, 1024]
    assert [(b.m, b.n) for b in found] == [(256, 256)] * 2 + [(512, 512)] * 3
    # each block follows the unit it names
    conv3 = net.features[4 + 1]
    assert [type(b).__name__ for b in conv3] == [
        "Bottleneck",
        "Bottleneck",
        "DoubleAttention",
        "Bottleneck",
        "Bottleneck",
        "DoubleAttention",
    ]


def test_attention_options():
    net = get_model("resnet26", attention="nonlocal", blocks="conv2:1, conv5:2", reduction=2)
    found = attention_blocks(net)
    assert [type(b) for b in found] == [NonLocal, NonLocal]
    assert [(b.in_channels, b.inner) for b in found] == [(128, 64), (1024, 512)]
    assert not attention_blocks(get_model("resnet26"))
    assert not attention_blocks(get_model("a2_resnet26", attention=None, blocks=[]))
    assert len(attention_blocks(get_model("resnet50", attention="a2"))) == 5  # family default
    assert len(attention_blocks(get_model("resnet26_3d", attention="a2", blocks=["conv3:1"]))) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"attention": "a2", "blocks": ["conv6:1"]}, "names no stage of this network"),
        ({"attention": "a2", "blocks": ["conv3:3"]}, "stage conv3 has units 1..2"),
        ({"attention": "a2", "blocks": ["conv3"]}, "is not of the form 'convS:U'"),
        ({"attention": "a2", "blocks": ["conv3:1", "conv3:1"]}, "is given twice"),
        ({"attention": "se"}, "attention must be None, 'a2' or 'nonlocal'"),
        ({"blocks": ["conv3:1"]}, "give attention='a2' or 'nonlocal' too"),
        ({"attention": "a2", "reduction": 0}, "reduction must be a positive integer"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_model("resnet26", **kwargs)


def test_bad_input_shape():
    net = get_model("resnet26", classes=3)
    net.initialize()
    with pytest.raises(
        ValueError, match=r"expects input of layout N x 3 x H x W, got shape \(1, 1, 32, 32\)"
    ):
        net(mx.nd.zeros((1, 1, 32, 32)))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        net(mx.nd.zeros((1, 3, 4, 32, 32)))


def _stage_shapes(net, input_shape):
    """Output shape of each stage conv2..conv5 by symbolic shape inference."""
    internals = net(mx.sym.var("data")).get_internals()
    names = internals.list_outputs()
    _, shapes, _ = internals.infer_shape(data=(1,) + input_shape)
    out = {}
    for name, shape in zip(names, shapes):
        for stage in ("conv2", "conv3", "conv4", "conv5"):
            if f"_{stage}_unit" in name and name.endswith("_output"):
                out[stage] = shape[2:]  # the last unit of the stage wins
    return out


def test_video_resnet_shapes_follow_table_1():
    assert _stage_shapes(get_model("resnet26_3d"), (3, 16, 112, 112)) == {
        "conv2": (8, 56, 56),
        "conv3": (8, 28, 28),
        "conv4": (8, 14, 14),
        "conv5": (8, 7, 7),
    }
    assert _stage_shapes(get_model("resnet50_3d"), (3, 8, 224, 224)) == {
        "conv2": (8, 56, 56),
        "conv3": (4, 28, 28),
        "conv4": (4, 14, 14),
        "conv5": (4, 7, 7),
    }
    assert _stage_shapes(get_model("a2_resnet50"), (3, 224, 224)) == {
        "conv2": (56, 56),
        "conv3": (28, 28),
        "conv4": (14, 14),
        "conv5": (7, 7),
    }


def test_resnet50_3d_temporal_kernels():
    net = get_model("resnet50_3d")
    kernels = {
        f"conv{i + 2}": [unit.conv2._kwargs["kernel"][0] for unit in net.features[4 + i]] for i in range(4)
    }
    assert kernels == {
        "conv2": [3, 3, 3],
        "conv3": [3, 1, 3, 1],
        "conv4": [3, 1, 3, 1, 3, 1],
        "conv5": [1, 3, 1],
    }


def test_new_a2_network_computes_its_backbone():
    """Zero-gamma blocks: a freshly built a2_resnet26 is resnet26 with the same weights."""
    base, a2 = get_model("resnet26", classes=5), get_model("a2_resnet26", classes=5)
    base.initialize(mx.init.Xavier())
    a2.initialize(mx.init.Xavier())
    base_params = {k.split("_", 1)[1]: v for k, v in base.collect_params().items()}
    for name, param in a2.collect_params().items():
        key = name.split("_", 1)[1]
        if key in base_params:
            param.set_data(base_params.pop(key).data())
    assert not base_params  # every backbone parameter was shared
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    np.testing.assert_allclose(a2(x).asnumpy(), base(x).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet50_v1b", "se_resnet50_v1"])
def test_gluoncv_baselines_take_attention(name):
    net = get_model(name, classes=4, attention="a2", blocks=["conv3:1", "conv4:6"])
    found = attention_blocks(net)
    assert [b.in_channels for b in found] == [512, 1024]
    net.initialize(mx.init.Xavier())
    net.hybridize()
    assert net(mx.nd.random.uniform(shape=(1, 3, 64, 64))).shape == (1, 4)
    with pytest.raises(ValueError, match="stage conv4 has units 1..6"):
        get_model(name, attention="a2", blocks=["conv4:7"])
