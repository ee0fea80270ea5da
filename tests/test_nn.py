"""The attention blocks against a float64 NumPy reference, and their contracts."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from a2gluon.engine.devices import DeviceError, cpu_supports_bfloat16, to_bfloat16
from a2gluon.nn import DoubleAttention, NonLocal

# 64 channels: MXNet's oneDNN path switches to blocked memory layouts from 32 channels on, where
# a bug of its hybridized 5-D path once went unseen by 12-channel tests.
C = 64
SHAPES = {1: (2, C, 10), 2: (2, C, 5, 6), 3: (2, C, 3, 4, 5)}
BN_EPS = 1e-5


def _softmax(z, axis):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _conv(block, x):
    """1x1 convolution of x (N x C x L) in float64."""
    w = block.weight.data().asnumpy().astype(np.float64)
    y = np.einsum("oc,ncl->nol", w.reshape(w.shape[0], -1), x)
    if block.bias is not None:
        y += block.bias.data().asnumpy().astype(np.float64)[None, :, None]
    return y


def _bn_inference(bn, x):
    p = {k.split("_")[-1]: v.data().asnumpy().astype(np.float64) for k, v in bn.params.items()}
    scale = p["gamma"] / np.sqrt(p["var"] + BN_EPS)
    return (x - p["mean"][None, :, None]) * scale[None, :, None] + p["beta"][None, :, None]


def reference_a2(block, x):
    """Paper eq. (6) in float64: Y = X + norm(extend(A softmax(B)^T softmax(V)))."""
    x = x.asnumpy().astype(np.float64)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    a, b, v = (_conv(c, flat) for c in (block.phi, block.theta, block.rho))
    maps, vectors = _softmax(b, axis=2), _softmax(v, axis=1)
    z = np.einsum("nml,nkl,nkj->nmj", a, maps, vectors)
    return (flat + _bn_inference(block.norm, _conv(block.extend, z))).reshape(x.shape)


def _maxpool_spatial(y, shape):
    """Max-pool N x d x L (L laid out as `shape`) by 2 over the last two axes (1-D: the last)."""
    y = y.reshape(y.shape[:2] + tuple(shape))
    if len(shape) == 1:
        n = shape[0] // 2
        return y[..., : 2 * n].reshape(y.shape[:2] + (n, 2)).max(-1).reshape(y.shape[0], y.shape[1], -1)
    h, w = shape[-2] // 2, shape[-1] // 2
    y = y[..., : 2 * h, : 2 * w].reshape(y.shape[:-2] + (h, 2, w, 2)).max(axis=(-3, -1))
    return y.reshape(y.shape[0], y.shape[1], -1)


def reference_nonlocal(block, x):
    shape = x.shape[2:]
    x = x.asnumpy().astype(np.float64)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    theta, phi, g = (_conv(c, flat) for c in (block.theta, block.phi, block.g))
    if block.subsample:
        phi, g = _maxpool_spatial(phi, shape), _maxpool_spatial(g, shape)
    f = _softmax(np.einsum("ndi,ndj->nij", theta, phi) * block.scale, axis=2)
    y = np.einsum("ndj,nij->ndi", g, f)
    return (flat + _bn_inference(block.norm, _conv(block.extend, y))).reshape(x.shape)


def _randomise_norm(block):
    """Give the output BatchNorm non-trivial statistics so that the attention branch shows."""
    c = block.in_channels
    block.norm.gamma.set_data(mx.nd.random.uniform(0.5, 1.5, shape=(c,)))
    block.norm.beta.set_data(mx.nd.random.normal(scale=0.1, shape=(c,)))
    block.norm.running_mean.set_data(mx.nd.random.normal(scale=0.1, shape=(c,)))
    block.norm.running_var.set_data(mx.nd.random.uniform(0.5, 1.5, shape=(c,)))


def make(cls, dims, channels=C, **kwargs):
    block = cls(channels, dims=dims, **kwargs)
    block.initialize(mx.init.Normal(0.5))
    _randomise_norm(block)
    return block


def rel_err(y, ref):
    return np.linalg.norm(y.asnumpy().astype(np.float64) - ref) / np.linalg.norm(ref)


def branch_rel_err(y, x, ref):
    """Relative error of the attention branch alone (output minus the identity)."""
    branch = ref - x.asnumpy().astype(np.float64)
    got = y.asnumpy().astype(np.float64) - x.asnumpy().astype(np.float64)
    return np.linalg.norm(got - branch) / np.linalg.norm(branch)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("association", ["left", "right"])
def test_double_attention_matches_float64_reference(dims, association):
    block = make(DoubleAttention, dims, association=association)
    x = mx.nd.random.normal(shape=SHAPES[dims])
    y = block(x)
    assert y.shape == x.shape
    assert branch_rel_err(y, x, reference_a2(block, x)) < 1e-5


@pytest.mark.parametrize("cls", [DoubleAttention, NonLocal])
@pytest.mark.parametrize("shape", [(1, 256, 4, 7, 7), (1, 256, 2, 8, 8), (1, 128, 16), (1, 512, 14, 14)])
def test_hybridized_matches_reference_at_network_sizes(cls, shape):
    """Regression: hybridized A^2 blocks at realistic channel counts were wrong in 3-D (and
    crashed in 1-D) when the softmax read oneDNN's blocked 5-D layout."""
    block = make(cls, len(shape) - 2, channels=shape[1])
    block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=shape)
    ref = reference_a2(block, x) if cls is DoubleAttention else reference_nonlocal(block, x)
    assert branch_rel_err(block(x), x, ref) < 1e-5


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_left_and_right_association_agree(dims):
    left = make(DoubleAttention, dims, m=5, n=7, association="left")
    right = DoubleAttention(C, m=5, n=7, dims=dims, association="right")
    right.initialize()
    for (kl, pl), (kr, pr) in zip(
        sorted(left._collect_params_with_prefix().items()),
        sorted(right._collect_params_with_prefix().items()),
    ):
        assert kl == kr
        pr.set_data(pl.data())
    x = mx.nd.random.normal(shape=SHAPES[dims])
    np.testing.assert_allclose(left(x).asnumpy(), right(x).asnumpy(), rtol=1e-5, atol=1e-5)


def test_attention_maps_and_vectors_are_normalised():
    block = make(DoubleAttention, 2, m=4, n=6)
    x = mx.nd.random.normal(shape=(3, C, 5, 7))
    maps, vectors = block.attention_weights(x)
    assert maps.shape == vectors.shape == (3, 6, 35)
    np.testing.assert_allclose(maps.sum(axis=2).asnumpy(), 1.0, rtol=1e-6)  # over locations
    np.testing.assert_allclose(vectors.sum(axis=1).asnumpy(), 1.0, rtol=1e-6)  # over n
    assert (maps.asnumpy() > 0).all() and (vectors.asnumpy() > 0).all()


@pytest.mark.parametrize("cls", [DoubleAttention, NonLocal])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_hybridized_equals_imperative(cls, dims):
    block = make(cls, dims)
    x = mx.nd.random.normal(shape=SHAPES[dims])
    eager = block(x).asnumpy()
    block.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_allclose(block(x).asnumpy(), eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(block(x).asnumpy(), eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [DoubleAttention, NonLocal])
@pytest.mark.parametrize("association", ["left", "right"])
def test_gradients_reach_every_parameter(cls, association):
    kwargs = {"association": association} if cls is DoubleAttention else {}
    block = make(cls, 2, **kwargs)
    x = mx.nd.random.normal(shape=SHAPES[2])
    x.attach_grad()
    with autograd.record():
        loss = (block(x) ** 2).sum()
    loss.backward()
    for name, param in block.collect_params().items():
        if param.grad_req == "null":
            continue  # running statistics
        grad = param.grad().asnumpy()
        assert np.isfinite(grad).all(), name
        assert np.abs(grad).max() > 0, f"no gradient reaches {name}"
    assert np.isfinite(x.grad.asnumpy()).all()


@pytest.mark.parametrize("cls", [DoubleAttention, NonLocal])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_new_block_is_the_identity(cls, dims):
    block = cls(C, dims=dims)
    block.initialize()
    x = mx.nd.random.normal(shape=SHAPES[dims])
    np.testing.assert_array_equal(block(x).asnumpy(), x.asnumpy())
    with autograd.record():  # training mode, batch statistics
        y = block(x)
    np.testing.assert_array_equal(y.asnumpy(), x.asnumpy())
    # ...and it can learn: gamma receives a gradient from the first step.
    with autograd.record():
        loss = (block(x) * mx.nd.random.normal(shape=x.shape)).sum()
    loss.backward()
    assert np.abs(block.norm.gamma.grad().asnumpy()).max() > 0


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("subsample", [False, True])
def test_nonlocal_shapes_and_reference(dims, subsample):
    block = make(NonLocal, dims, subsample=subsample)
    shape = {1: (2, C, 9), 2: (2, C, 4, 7), 3: (2, C, 2, 7, 6)}[dims]  # odd sizes: pooling floors
    x = mx.nd.random.normal(shape=shape)
    y = block(x)
    assert y.shape == x.shape
    assert branch_rel_err(y, x, reference_nonlocal(block, x)) < 1e-5
    block.hybridize()
    assert branch_rel_err(block(x), x, reference_nonlocal(block, x)) < 1e-5


def test_channel_sizes():
    assert (DoubleAttention(64).m, DoubleAttention(64).n) == (16, 16)
    block = DoubleAttention(64, reduction=2)
    assert (block.m, block.n) == (32, 32)
    block = DoubleAttention(64, m=8, n=3)
    assert (block.m, block.n) == (8, 3)
    assert NonLocal(64).inner == 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"m": 0}, "m must be a positive integer"),
        ({"n": -2}, "n must be a positive integer"),
        ({"reduction": 0}, "reduction must be a positive integer"),
        ({"association": "middle"}, "association must be 'left' or 'right'"),
        ({"dims": 4}, "dims must be 1, 2 or 3"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DoubleAttention(16, **kwargs)


def test_bad_in_channels():
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        DoubleAttention(0)
    with pytest.raises(ValueError, match="inner must be a positive integer"):
        NonLocal(16, inner=0)


@pytest.mark.parametrize("cls", [DoubleAttention, NonLocal])
@pytest.mark.parametrize("hybridize", [False, True])
def test_bad_input(cls, hybridize):
    block = cls(16)
    block.initialize()
    if hybridize:
        block.hybridize()
    with pytest.raises(ValueError, match="input has 8 channels but the block was built with in_channels=16"):
        block(mx.nd.zeros((2, 8, 4, 4)))
    with pytest.raises(ValueError, match="build the block with dims=3"):
        block(mx.nd.zeros((2, 16, 2, 4, 4)))
    with pytest.raises(ValueError, match="expected a 2-D input"):
        block(mx.nd.zeros((16,)))


def test_bfloat16_on_cpu():
    """bfloat16 through MXNet AMP where oneDNN supports it (AVX-512); a clear error elsewhere."""
    block = make(DoubleAttention, 2)
    block.hybridize()
    x = mx.nd.random.normal(shape=(2, C, 6, 6))
    expected = block(x).asnumpy()
    if not cpu_supports_bfloat16():
        with pytest.raises(DeviceError, match="bfloat16 on CPU needs AVX-512"):
            to_bfloat16(block)
        return
    y = to_bfloat16(block)(x)
    y = mx.nd.amp_cast(y, dtype="float32").asnumpy()
    # bfloat16 keeps 8 significant bits: compare the branch at a few per cent.
    branch = expected - x.asnumpy()
    assert np.linalg.norm(y - x.asnumpy() - branch) / np.linalg.norm(branch) < 0.05
