"""Inflation (--pretrained-2d) and transfer (--pretrained): an image network's weights in its video
network, checked on clips of identical frames, and a checkpoint for other classes.

What holds exactly, and why not more: with ``centre`` inflation every frame of a clip of T
identical frames goes through the image network's arithmetic, so the video network's output is
the image network's (both pairs, A² blocks included: their softmax over T x H x W copies of the
same map gathers what the one over H x W gathers).  With ``mean`` inflation (the 2-D kernel / k
repeated k times, I3D's and the default) a k x 3 x 3 convolution sees all its k taps only where
the clip has frames on both sides: the networks pad time with zeros, so within k//2 frames of
either end a tap falls on the padding and the response is (k-1)/k of the 2-D one.  That edge
spreads one frame inwards per temporal convolution; features farther from the ends than that are
exact, and the global pooling (and, in A² networks, every block's gathering over all locations)
mixes the edges in.  So in mean mode the test checks the pre-pooling features away from the
ends, which needs a long clip (40 frames, 20 after conv3's temporal stride)."""

import json
import logging

import mxnet as mx
import numpy as np
import pytest

from a2gluon.engine.pretrained import start_from
from a2gluon.engine.settings import TrainError, TrainSettings
from a2gluon.models import get_model
from a2gluon.models.inflate import inflate_array, own_arrays, transfer

FRAME = (2, 3, 32, 32)  # two 32 x 32 images: resnet50's 32x downsampling leaves 1 x 1


def randomise(net, seed=0):
    """Every parameter random (BatchNorm statistics and the A² blocks' zero-initialised gamma
    too), scaled to keep activations of order one: the test must see every weight."""
    rs = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith("gamma"):
            v = rs.uniform(0.5, 1.0, p.shape)
        elif name.endswith("running_var"):
            v = rs.uniform(1.0, 2.0, p.shape)
        elif name.endswith(("beta", "running_mean", "bias")):
            v = rs.normal(0, 0.1, p.shape)
        else:
            v = rs.normal(0, np.sqrt(1.0 / np.prod(p.shape[1:])), p.shape)
        p.set_data(mx.nd.array(v))


def image_and_clip(frames, seed=1):
    x = mx.nd.array(np.random.RandomState(seed).normal(size=FRAME))
    return x, x.expand_dims(2).repeat(frames, axis=2)


def features_before_pooling(net, x):
    for block in list(net.features)[:-2]:  # up to GlobalAvgPool + Flatten
        x = block(x)
    return x


def inflated(image_name, video_name, mode):
    image = get_model(image_name, classes=10)
    image.initialize()
    randomise(image)
    video = get_model(video_name, classes=10)
    video.initialize()
    report = transfer(video, own_arrays(image), mode=mode)
    return image, video, report


def test_inflate_array():
    w = np.random.RandomState(0).normal(size=(4, 2, 3, 3)).astype("float32")
    mean = inflate_array(w, (4, 2, 3, 3, 3), "mean")
    np.testing.assert_allclose(mean.sum(axis=2), w, rtol=1e-6)
    assert np.allclose(mean[:, :, 0], mean[:, :, 2])
    centre = inflate_array(w, (4, 2, 3, 3, 3), "centre")
    assert np.array_equal(centre[:, :, 1], w) and not centre[:, :, [0, 2]].any()
    assert np.array_equal(inflate_array(w, (4, 2, 1, 3, 3), "mean")[:, :, 0], w)  # 1 x 3 x 3
    with pytest.raises(ValueError, match="does not inflate"):
        inflate_array(w, (4, 2, 3, 5, 5))


@pytest.mark.parametrize(
    "image_name, video_name", [("resnet50", "resnet50_3d"), ("a2_resnet50", "a2_resnet50_3d")]
)
def test_identical_frames_give_the_image_output(image_name, video_name):
    """centre inflation: the video network on T identical frames = the image network on the frame
    (logits, BatchNorm in inference mode), every parameter taken."""
    image, video, report = inflated(image_name, video_name, "centre")
    assert not report.new and not report.reshaped and not report.unused
    # the stem 5x5 -> 3x5x5 and every k x 3 x 3 (k = 3) inflated; 1x1 and A² weights as they are
    assert "conv1_weight" in report.inflated and "conv2_unit1_conv2_weight" in report.inflated
    k1 = video.collect_params()[video.prefix + "conv3_unit2_conv2_weight"]
    assert k1.shape[2:] == (1, 3, 3) and "conv3_unit2_conv2_weight" in report.inflated  # I3D's 3,1,3,1
    if image_name.startswith("a2"):
        assert {"conv3_a22_phi_weight", "conv4_a26_extend_weight"} <= set(report.copied)
    x, clip = image_and_clip(frames=4)
    expect, got = image(x).asnumpy(), video(clip).asnumpy()
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())


def test_mean_inflation_is_exact_away_from_the_clip_ends():
    image, video, report = inflated("resnet50", "resnet50_3d", "mean")
    assert report.loaded == len(own_arrays(image))
    x, clip = image_and_clip(frames=40)
    expect = features_before_pooling(image, x).asnumpy()  # N x 2048 x 1 x 1
    got = features_before_pooling(video, clip).asnumpy()  # N x 2048 x 20 x 1 x 1
    error = np.abs(got - expect[:, :, None]).max(axis=(0, 1, 3, 4)) / np.abs(expect).max()
    assert got.shape[2] == 20 and (error[7:12] < 1e-5).all(), error
    assert error[0] > 1e-2 and error[-1] > 1e-2  # the zero temporal padding at the ends


def test_a2_blocks_are_new_when_the_image_network_has_none():
    """The paper's Kinetics start: ImageNet ResNet-50 + 5 new A² blocks."""
    _, video, report = inflated("resnet50", "a2_resnet50_3d", "mean")
    assert len({"_".join(n.split("_")[:2]) for n in report.new}) == 5  # conv3_a22, a24, conv4_a22, a24, a26
    assert all("_a2" in n for n in report.new) and not report.reshaped and not report.unused
    gamma = video.collect_params()[video.prefix + "conv3_a22_norm_gamma"].data()
    assert not gamma.asnumpy().any()  # initialised as usual: the block starts as the identity


def _checkpoint(tmp_path, model, classes, **kwargs):
    net = get_model(model, classes=classes, **kwargs)
    net.initialize(mx.init.Xavier())
    randomise(net, seed=3)
    path = tmp_path / f"{model}.params"
    net.save_parameters(str(path))
    meta = {"model": model, "num_classes": classes, "model_kwargs": kwargs}
    (tmp_path / f"{model}.json").write_text(json.dumps(meta))
    return str(path), net


def _log():
    records = []
    log = logging.getLogger("test_inflate")
    log.handlers = [type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r.getMessage())})()]
    log.setLevel(logging.INFO)
    return log, records


def test_pretrained_2d_from_a_training_checkpoint(tmp_path):
    path, image = _checkpoint(tmp_path, "resnet26", 7)
    video = get_model("a2_resnet26_3d", classes=5)
    video.initialize(mx.init.MSRAPrelu())
    log, lines = _log()
    start_from(video, TrainSettings(model="a2_resnet26_3d", pretrained_2d=path), log)
    text = "\n".join(lines)
    assert "kernels inflated" in text and "conv3_a22_phi_weight" in text and "classifier (dense0_bias" in text
    w2 = own_arrays(image)["conv2_unit1_conv2_weight"].asnumpy()
    w3 = own_arrays(video)["conv2_unit1_conv2_weight"].asnumpy()
    np.testing.assert_allclose(w3, np.repeat(w2[:, :, None] / 3, 3, axis=2), rtol=1e-6)
    with pytest.raises(TrainError, match="inflates into a video network"):
        start_from(get_model("resnet26", classes=5), TrainSettings(model="resnet26", pretrained_2d=path), log)


def test_pretrained_with_another_class_count(tmp_path):
    """Kinetics -> UCF-101: everything but the classifier, said in one line."""
    path, source = _checkpoint(tmp_path, "a2_resnet26_3d", 7)
    net = get_model("a2_resnet26_3d", classes=3)
    net.initialize(mx.init.MSRAPrelu())
    log, lines = _log()
    report = start_from(net, TrainSettings(model="a2_resnet26_3d", pretrained=path), log)
    assert report.classifier_reset() == (7, 3)
    assert [line for line in lines if "classifier" in line] == [
        "--pretrained: classifier re-initialised for 3 classes (a2_resnet26_3d.params has 7)"
    ]
    got, want = own_arrays(net), own_arrays(source)
    assert all(np.array_equal(got[n].asnumpy(), want[n].asnumpy()) for n in want if not n.startswith("dense"))
    assert got["dense0_weight"].shape == (3, 1024)
    missing = str(tmp_path / "none.params")
    with pytest.raises(TrainError, match="does not exist"):
        start_from(net, TrainSettings(model="a2_resnet26_3d", pretrained=missing), log)
