"""symbols/: classic get_symbol modules traced from the Gluon models; a Module bound on them
with the Gluon model's params gives the Gluon model's outputs."""

import os
import sys

import mxnet as mx
import numpy as np
import pytest

from a2gluon.deploy import export_model, load_gluon_model, module_params
from a2gluon.models import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from symbols import a2_resnet, a2_resnet_3d, resnet, resnet_3d  # noqa: E402


def trained_params(path, name, input_shape, classes=5, **kwargs):
    """Params of a freshly initialised `name` with random BatchNorm statistics (so that the
    attention blocks' zero-gamma norms do not hide them); (path, input, Gluon output)."""
    net = get_model(name, classes=classes, **kwargs)
    net.initialize(mx.init.Xavier(magnitude=2.0))
    rng = np.random.RandomState(0)
    for pname, p in net.collect_params().items():
        if pname.endswith(("gamma", "running_var")):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
        elif pname.endswith(("beta", "running_mean")):
            p.set_data(mx.nd.array(rng.uniform(-0.2, 0.2, p.shape)))
    x = mx.nd.array(rng.uniform(-1, 1, (1,) + tuple(input_shape)))
    y = net(x).asnumpy()
    net.save_parameters(str(path))
    return str(path), x, y


def module_outputs(sym, x, arg_params=None, aux_params=None, params_file=None):
    label = ["softmax_label"] if "softmax_label" in sym.list_arguments() else None
    mod = mx.mod.Module(sym, data_names=["data"], label_names=label, context=mx.cpu())
    labels = [("softmax_label", (x.shape[0],))] if label else None
    mod.bind(data_shapes=[("data", x.shape)], label_shapes=labels, for_training=False)
    if params_file:
        mod.load_params(params_file)
    else:
        mod.set_params(arg_params, aux_params)  # allow_missing=False: every name must match
    mod.forward(mx.io.DataBatch([x]), is_train=False)
    return mod.get_outputs()[0].asnumpy()


def softmax(y):
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


CASES = [
    # (symbol module, get_symbol kwargs, registry name, model kwargs, input shape)
    (a2_resnet, {"num_layers": 26}, "a2_resnet26", {}, (3, 64, 64)),
    (resnet, {"num_layers": 26}, "resnet26", {}, (3, 64, 64)),
    (
        resnet,
        {"num_layers": 26, "attention": "nonlocal", "blocks": "conv4:1"},
        "resnet26",
        {"attention": "nonlocal", "blocks": "conv4:1"},
        (3, 64, 64),
    ),
    (a2_resnet_3d, {"num_layers": 26}, "a2_resnet26_3d", {}, (3, 4, 32, 32)),
    (resnet_3d, {"num_layers": 29}, "resnet29_3d", {}, (3, 4, 32, 32)),
]


@pytest.mark.parametrize("module, sym_kwargs, name, model_kwargs, shape", CASES, ids=[c[2] for c in CASES])
def test_module_on_symbol_gives_gluon_outputs(tmp_path, module, sym_kwargs, name, model_kwargs, shape):
    params, x, y = trained_params(tmp_path / "net.params", name, shape, **model_kwargs)
    loaded = load_gluon_model(name, params, num_classes=5, model_kwargs=model_kwargs)
    arg_params, aux_params = module_params(loaded)
    image_shape = ",".join(map(str, shape))
    scores = module.get_symbol(5, image_shape, softmax_output=False, **sym_kwargs)
    np.testing.assert_allclose(module_outputs(scores, x, arg_params, aux_params), y, rtol=1e-5, atol=1e-5)
    with_softmax = module.get_symbol(num_classes=5, image_shape=image_shape, **sym_kwargs)
    assert with_softmax.list_outputs() == ["softmax_output"]
    np.testing.assert_allclose(
        module_outputs(with_softmax, x, arg_params, aux_params), softmax(y), rtol=1e-5, atol=1e-6
    )


def test_exported_params_load_into_symbols_module(tmp_path):
    """The names of an export are those of symbols/: Module.load_params reads PREFIX-0000.params."""
    params, x, y = trained_params(tmp_path / "net.params", "a2_resnet26", (3, 64, 64))
    export_model(load_gluon_model("a2_resnet26", params), str(tmp_path / "exp"), (3, 64, 64))
    sym = a2_resnet.get_symbol(num_classes=5, image_shape="3,64,64", num_layers=26, softmax_output=False)
    out = module_outputs(sym, x, params_file=str(tmp_path / "exp-0000.params"))
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-5)


def test_get_symbol_checks_its_arguments():
    with pytest.raises(ValueError, match="num_layers"):
        a2_resnet.get_symbol(num_layers=34)
    with pytest.raises(ValueError, match="3 positive integers"):
        resnet.get_symbol(image_shape="3,224")
    with pytest.raises(ValueError, match="4 positive integers"):
        resnet_3d.get_symbol(image_shape="3,224,224")
    with pytest.raises(ValueError, match="cannot run"):
        resnet.get_symbol(image_shape="3,8,8", num_layers=26)
    sym = a2_resnet.get_symbol()  # the defaults: a2_resnet50, 1000 classes, 3x224x224
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, 224, 224))
    assert out_shapes == [(1, 1000)]
    assert "a2_resnet50_conv3_a22_phi_weight" in sym.list_arguments()
