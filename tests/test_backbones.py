"""Backbones: application layer groups, ImageNet weights from the Keras cache, `.keras` files.

Nothing here downloads: the ImageNet tests write the weight files themselves, and Keras's
download function is replaced by one that fails like a machine without network.
"""

import os
import types
import urllib.error

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend import config as keras_config
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

import tfft.testing
from tfft.backbones import Backbone, build_backbone, imagenet_weights_available
from tfft.backbones.applications import (
    APPLICATIONS,
    FAMILY_RULES,
    build_application,
    get_application,
    weights_cache_dir,
)
from tfft.backbones.files import load_backbone_file
from tfft.errors import BackboneError
from tfft.freezing import layer_groups


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache, and downloads that fail as they do without network.

    Keras reads KERAS_HOME once, when it is imported, so its own cache folder is pointed at
    the same place; tfft reads the variable at each call.
    """
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    downloads = []

    def offline(url, target, *args, **kwargs):
        downloads.append((url, target))
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    return types.SimpleNamespace(home=str(home), models=str(home / "models"), downloads=downloads)


def _graph_nodes(model):
    """Every node of the model's graph, non-layer operations (`x + y`) included."""
    nodes, stack = {}, []
    for tensor in model.outputs:
        operation, index, _ = tensor._keras_history
        stack.append(operation._inbound_nodes[index])
    while stack:
        node = stack.pop()
        if id(node) not in nodes:
            nodes[id(node)] = node
            stack.extend(node.parent_nodes)
    return list(nodes.values())


def _boundaries_cross_one_tensor(model, groups):
    """Whether a single tensor crosses every group boundary, following `x + y` operations.

    An operation without variables (ConvNeXt's residual `inputs + x`, MobileNetV3's hard
    sigmoid) sits on the earlier side when all its inputs come from there.
    """
    nodes = _graph_nodes(model)
    for k in range(1, len(groups)):
        early = {id(layer) for group in groups[:k] for layer in group.layers}
        side = {}

        def is_early(node):
            if id(node) not in side:
                operation = node.operation
                if isinstance(operation, keras.layers.InputLayer) or id(operation) in early:
                    side[id(node)] = True
                elif isinstance(operation, keras.layers.Layer):
                    side[id(node)] = False
                else:
                    side[id(node)] = all(is_early(parent) for parent in node.parent_nodes)
            return side[id(node)]

        crossing = {
            id(parent)
            for node in nodes
            if not is_early(node)
            for parent in node.parent_nodes
            if is_early(parent)
        }
        if len(crossing) != 1:
            return False
    return True


def _checked_groups(backbone):
    groups = layer_groups(backbone.model, rules=backbone.rules)
    assert _boundaries_cross_one_tensor(backbone.model, groups)
    return groups


def _write_legacy_weights(model, path):
    # The format of Keras's ImageNet files, which `model.load_weights(".h5")` reads.
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])


def _assert_same_weights(a, b):
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


STAGES = ["stem", "stage1", "stage2", "stage3", "stage4"]

FAMILY_CASES = [
    # name, input size, groups, (a layer, the group it belongs to)
    ("ResNet50", 32, ["stem", "conv2", "conv3", "conv4", "conv5"], ("pool1_pool", "stem")),
    ("ResNet50V2", 32, ["stem", "conv2", "conv3", "conv4", "conv5"], ("post_relu", "conv5")),
    (
        "EfficientNetB0",
        32,
        ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"],
        ("normalization", "stem"),
    ),
    (
        "EfficientNetV2B0",
        32,
        ["stem"] + [f"block{i}" for i in range(1, 7)] + ["top"],
        ("block6h_add", "block6"),
    ),
    ("MobileNet", 32, STAGES, ("conv_pad_6", "stage3")),
    ("MobileNetV2", 32, STAGES + ["top"], ("expanded_conv_project_BN", "stem")),
    ("MobileNetV3Small", 32, STAGES + ["top"], ("expanded_conv_project_bn", "stage1")),
    ("MobileNetV3Large", 32, STAGES + ["top"], ("expanded_conv_add", "stem")),
    (
        "ConvNeXtTiny",
        32,
        ["stem", "stage0", "stage1", "stage2", "stage3"],
        ("convnext_tiny_downsampling_block_0", "stage1"),
    ),
    (
        "DenseNet121",
        32,
        ["stem", "conv2", "conv3", "conv4", "conv5", "top"],
        ("pool2_pool", "conv2"),
    ),
    ("Xception", 71, [f"block{i}" for i in range(1, 15)], ("block13_pool", "block13")),
    ("InceptionV3", 75, [f"mixed{i}" for i in range(11)], ("mixed9_1", "mixed10")),
    (
        "InceptionResNetV2",
        75,
        ["mixed_5b", "mixed_6a", "mixed_7a", "conv_7b_ac"],
        ("block17_20_ac", "mixed_7a"),
    ),
    ("VGG16", 32, [f"block{i}" for i in range(1, 6)], ("block5_pool", "block5")),
]


@pytest.mark.parametrize(
    "name,size,expected,placement", FAMILY_CASES, ids=[case[0] for case in FAMILY_CASES]
)
def test_family_rules_give_block_aware_groups(name, size, expected, placement):
    backbone = build_application(name, weights=None, input_size=size)
    groups = _checked_groups(backbone)
    assert [g.name for g in groups] == expected
    layer, group = placement
    assert layer in [l.name for g in groups if g.name == group for l in g.layers]
    assert isinstance(backbone, Backbone) and backbone.name == name


def test_rules_ignore_generated_layer_names():
    first = build_application("Xception", weights=None, input_size=71)
    for _ in range(3):
        keras.layers.Add(), keras.layers.Conv2D(1, 1), keras.layers.BatchNormalization()
    second = build_application("Xception", weights=None, input_size=71)

    assert {l.name for l in first.model.layers} != {l.name for l in second.model.layers}
    assert _group_sizes(first) == _group_sizes(second)


def _group_sizes(backbone):
    return [(g.name, len(g.layers)) for g in layer_groups(backbone.model, rules=backbone.rules)]


def test_names_are_case_and_separator_insensitive():
    assert get_application("resnet50") is get_application("ResNet50")
    assert get_application("efficientnet_v2-b0").name == "EfficientNetV2B0"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(BackboneError, match=r"Did you mean .*ResNet50.*Received: name='ResNet5'"):
        build_application("ResNet5", weights=None)


def test_input_smaller_than_the_family_minimum_is_refused():
    with pytest.raises(BackboneError, match=r"at least 71x71 .*Received: input_size=64"):
        build_application("Xception", weights=None, input_size=64)


def test_every_preprocess_works_inside_a_dataset_map():
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    for preprocess in {spec.preprocess for spec in APPLICATIONS.values()}:
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(2).map(preprocess)
        mapped = np.concatenate([batch.numpy() for batch in dataset])
        # A tensor, not the NumPy array: on float arrays `preprocess_input` works in place.
        expected = np.asarray(preprocess(tf.constant(images)))
        np.testing.assert_allclose(mapped, expected, rtol=1e-6)
        assert np.isfinite(mapped).all()


def test_imagenet_weights_load_from_the_keras_cache_without_download(keras_home):
    source = build_application("MobileNetV3Small", weights=None, input_size=32).model
    _randomize(source)
    file_name = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    assert not imagenet_weights_available("MobileNetV3Small")
    _write_legacy_weights(source, os.path.join(keras_home.models, file_name))
    assert imagenet_weights_available("mobilenetv3small")

    backbone = build_application("mobilenetv3small", input_size=32)

    _assert_same_weights(backbone.model, source)
    assert keras_home.downloads == []


def test_imagenet_weights_neither_cached_nor_downloadable_name_file_folder_and_url(keras_home):
    file_name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    url = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" + file_name

    with pytest.raises(BackboneError) as info:
        build_application("MobileNetV2", input_size=96)

    message = str(info.value)
    assert "\n" not in message
    assert file_name in message and url in message and keras_home.models in message
    # The file and URL tfft names are the ones Keras itself tried.
    assert keras_home.downloads == [(url, os.path.join(keras_home.models, file_name))]


def test_weights_cache_dir_follows_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert weights_cache_dir() == str(tmp_path / "models")
    # Like `keras.utils.get_file`, a home that cannot be written to falls back to /tmp.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "missing"))
    assert weights_cache_dir() == "/tmp/.keras/models"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".keras").mkdir()
    assert weights_cache_dir() == str(tmp_path / ".keras" / "models")


def test_weights_from_a_local_file(tmp_path):
    source = build_application("MobileNetV3Small", weights=None, input_size=32).model
    _randomize(source, seed=1)
    path = str(tmp_path / "small.weights.h5")
    source.save_weights(path)

    backbone = build_application("MobileNetV3Small", weights=path, input_size=32)

    _assert_same_weights(backbone.model, source)


def test_missing_or_unreadable_weights_file_is_named(tmp_path):
    missing = str(tmp_path / "nowhere.h5")
    with pytest.raises(BackboneError, match=f"'{missing}' for MobileNetV3Small does not exist"):
        build_application("MobileNetV3Small", weights=missing, input_size=32)
    broken = tmp_path / "broken.h5"
    broken.write_text("not weights")
    with pytest.raises(BackboneError, match=f"Cannot load weights file '{broken}'"):
        build_application("MobileNetV3Small", weights=str(broken), input_size=32)


def test_keras_file_loads_back_with_its_weights(tmp_path):
    model = tfft.testing.tiny_resnet(32)
    _randomize(model)
    path = tmp_path / "tiny.keras"
    model.save(path)

    backbone = load_backbone_file(path)

    _assert_same_weights(backbone.model, model)
    assert (backbone.rules, backbone.preprocess, backbone.family) == (None, None, "custom")
    assert backbone.name == "tiny_resnet"


def test_saved_classifier_gives_back_its_nested_backbone(tmp_path):
    backbone_model = tfft.testing.tiny_resnet(32)
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone_model(inputs))
    classifier = keras.Model(inputs, keras.layers.Dense(2)(features), name="tfft_classifier")
    _randomize(classifier)
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)

    backbone = build_backbone(path, family="resnet")

    assert backbone.model.name == "tiny_resnet"
    _assert_same_weights(backbone.model, backbone_model)
    groups = layer_groups(backbone.model, rules=backbone.rules)
    assert [g.name for g in groups] == ["stem", "conv2", "conv3", "conv4"]


def test_sequential_keras_file_becomes_functional(tmp_path):
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.Conv2D(4, 3)]
    )
    path = str(tmp_path / "sequential.keras")
    model.save(path)

    backbone = load_backbone_file(path)

    assert [g.name for g in layer_groups(backbone.model, num_groups=2)] == ["part1", "part2"]


@keras.saving.register_keras_serializable(package="tests")
class _Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(2, 3)

    def call(self, inputs):
        return self.conv(inputs)


def test_subclassed_keras_file_is_refused(tmp_path):
    model = _Subclassed()
    model(np.zeros((1, 8, 8, 3), "float32"))
    path = str(tmp_path / "subclassed.keras")
    model.save(path)
    with pytest.raises(BackboneError, match="subclassed model"):
        load_backbone_file(path)


def test_keras_file_errors_name_the_file(tmp_path):
    with pytest.raises(BackboneError, match="'missing.keras' does not exist"):
        load_backbone_file("missing.keras")
    with pytest.raises(BackboneError, match=r"'model.h5' is not a .keras file"):
        build_backbone("model.h5")
    broken = tmp_path / "broken.keras"
    broken.write_text("not a zip")
    with pytest.raises(BackboneError, match=f"Cannot read backbone file '{broken}'"):
        load_backbone_file(broken)
    with pytest.raises(BackboneError, match=r"Unknown backbone family 'resnt'.*'resnet'"):
        load_backbone_file(broken, family="resnt")


def test_a_backbone_file_needs_no_imagenet_download():
    assert imagenet_weights_available("runs/model.keras")


def test_family_is_only_for_files():
    with pytest.raises(BackboneError, match="'resnet' family"):
        build_backbone("ResNet50", weights=None, family="densenet")


# The groups every family gives; EfficientNetV2 S/M/L differ from B0-B3 in their last block.
EXPECTED_GROUPS = {
    "resnet": ["stem", "conv2", "conv3", "conv4", "conv5"],
    "resnet_v2": ["stem", "conv2", "conv3", "conv4", "conv5"],
    "efficientnet": ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"],
    "efficientnet_v2": ["stem"] + [f"block{i}" for i in range(1, 7)] + ["top"],
    "efficientnet_v2_large": ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"],
    "mobilenet": STAGES,
    "mobilenet_v2": STAGES + ["top"],
    "mobilenet_v3_small": STAGES + ["top"],
    "mobilenet_v3_large": STAGES + ["top"],
    "convnext": ["stem", "stage0", "stage1", "stage2", "stage3"],
    "densenet": ["stem", "conv2", "conv3", "conv4", "conv5", "top"],
    "xception": [f"block{i}" for i in range(1, 15)],
    "inception_v3": [f"mixed{i}" for i in range(11)],
    "inception_resnet_v2": ["mixed_5b", "mixed_6a", "mixed_7a", "conv_7b_ac"],
    "vgg": [f"block{i}" for i in range(1, 6)],
}


@pytest.mark.slow
# MobileNets warn that a size without weights of its own gets the 224-pixel weights.
@pytest.mark.filterwarnings("ignore:.*Weights for input shape")
@pytest.mark.parametrize("key", list(APPLICATIONS), ids=[s.name for s in APPLICATIONS.values()])
def test_every_application_builds_with_valid_groups_and_keras_weights_names(key, keras_home):
    spec = APPLICATIONS[key]
    size = max(32, spec.min_size)
    backbone = build_application(spec.name, weights=None, input_size=size)
    family = spec.family
    if spec.name in ("EfficientNetV2M", "EfficientNetV2L"):
        family = "efficientnet_v2_large"
    assert [g.name for g in _checked_groups(backbone)] == EXPECTED_GROUPS[family]
    del backbone
    keras.backend.clear_session()

    with pytest.raises(BackboneError):
        build_application(spec.name, input_size=size)
    file_name = spec.weights_file_name(size)
    assert keras_home.downloads == [
        (spec.weights_file_url(size), os.path.join(keras_home.models, file_name))
    ]
    keras.backend.clear_session()


def test_every_family_has_rules_and_every_application_a_family():
    # Every family but tfft's own compact CNNs is an application's.
    assert {spec.family for spec in APPLICATIONS.values()} == set(FAMILY_RULES) - {"audio_cnn", "image_cnn"}


def test_a_saved_application_keeps_its_family_and_preprocessing(tmp_path):
    import keras as _keras

    path = tmp_path / "resnet.keras"
    _keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3)).save(path)
    backbone = load_backbone_file(str(path))
    assert backbone.family == "resnet" and backbone.preprocess is _keras.applications.resnet.preprocess_input
