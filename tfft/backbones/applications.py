"""Keras applications as backbones: the catalogue, their layer groups and ImageNet weights.

Every application is built without its classifier (`include_top=False`, `pooling=None`: the
head pools). ImageNet weights are looked up in the Keras cache first, so a machine without
network access can use a weights file copied there; otherwise Keras downloads the file as it
always does, and a failed download is a `BackboneError` that says which file to fetch from
where and where to put it. Nothing falls back to random weights unless asked (`weights=None`).
"""

import dataclasses
import difflib
import os
import tempfile
from typing import Callable

import keras

from tfft.backbones import Backbone
from tfft.errors import BackboneError
from tfft.freezing import GroupRules

_KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class Application:
    """One Keras application of the catalogue.

    Args:
        name: display name, as `keras.applications` spells it (`"ResNet50"`).
        constructor: the `keras.applications` function that builds it.
        family: key of its layer-group rules in `FAMILY_RULES`.
        preprocess: the application's own `preprocess_input`, applied to float32 0-255
            batches in the data pipeline (a pass-through for families that normalise inside
            the model: EfficientNet, EfficientNetV2, MobileNetV3, ConvNeXt).
        weights_file: file name of the ImageNet weights without the top, as Keras's loader
            names it in its cache; `{rows}` stands for the input size of the weights.
        weights_url: folder URL the file is downloaded from.
        min_size: smallest input height and width the application accepts.
        weights_sizes: input sizes with their own ImageNet weights (`{rows}`); any other
            input size uses the 224-pixel weights, as Keras does.

    Example:
        >>> spec = get_application("resnet50")
        >>> spec.weights_file_name()
        'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'
    """

    name: str
    constructor: Callable
    family: str
    preprocess: Callable
    weights_file: str
    weights_url: str
    min_size: int = 32
    weights_sizes: tuple = (224,)

    def weights_file_name(self, input_size=224):
        """The ImageNet no-top weights file Keras loads for this input size."""
        rows = input_size if input_size in self.weights_sizes else 224
        return self.weights_file.format(rows=rows)

    def weights_file_url(self, input_size=224):
        """The URL Keras downloads `weights_file_name(input_size)` from."""
        return self.weights_url + self.weights_file_name(input_size)


def _catalogue():
    apps = keras.applications
    entries = []

    def add(name, constructor, family, preprocess, weights_file, folder, **options):
        entries.append(
            Application(name, constructor, family, preprocess, weights_file, folder, **options)
        )

    for depth in (50, 101, 152):
        add(f"ResNet{depth}", getattr(apps, f"ResNet{depth}"), "resnet",
            apps.resnet.preprocess_input,
            f"resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5", _KERAS_URL + "resnet/")
        add(f"ResNet{depth}V2", getattr(apps, f"ResNet{depth}V2"), "resnet_v2",
            apps.resnet_v2.preprocess_input,
            f"resnet{depth}v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_URL + "resnet/")
    for variant in range(8):
        # Unlike the other families, EfficientNet's files live outside `tensorflow/`.
        add(f"EfficientNetB{variant}", getattr(apps, f"EfficientNetB{variant}"), "efficientnet",
            apps.efficientnet.preprocess_input, f"efficientnetb{variant}_notop.h5",
            "https://storage.googleapis.com/keras-applications/")
    for variant in ("B0", "B1", "B2", "B3", "S", "M", "L"):
        add(f"EfficientNetV2{variant}", getattr(apps, f"EfficientNetV2{variant}"),
            "efficientnet_v2", apps.efficientnet_v2.preprocess_input,
            f"efficientnetv2-{variant.lower()}_notop.h5", _KERAS_URL + "efficientnet_v2/")
    add("MobileNet", apps.MobileNet, "mobilenet", apps.mobilenet.preprocess_input,
        "mobilenet_1_0_{rows}_tf_no_top.h5", _KERAS_URL + "mobilenet/",
        weights_sizes=(128, 160, 192, 224))
    add("MobileNetV2", apps.MobileNetV2, "mobilenet_v2", apps.mobilenet_v2.preprocess_input,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
        _KERAS_URL + "mobilenet_v2/", weights_sizes=(96, 128, 160, 192, 224))
    for size in ("Small", "Large"):
        add(f"MobileNetV3{size}", getattr(apps, f"MobileNetV3{size}"),
            f"mobilenet_v3_{size.lower()}", apps.mobilenet_v3.preprocess_input,
            f"weights_mobilenet_v3_{size.lower()}_224_1.0_float_no_top_v2.h5",
            _KERAS_URL + "mobilenet_v3/")
    for size in ("Tiny", "Small", "Base", "Large", "XLarge"):
        add(f"ConvNeXt{size}", getattr(apps, f"ConvNeXt{size}"), "convnext",
            apps.convnext.preprocess_input, f"convnext_{size.lower()}_notop.h5",
            _KERAS_URL + "convnext/")
    for depth in (121, 169, 201):
        add(f"DenseNet{depth}", getattr(apps, f"DenseNet{depth}"), "densenet",
            apps.densenet.preprocess_input,
            f"densenet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_URL + "densenet/")
    add("Xception", apps.Xception, "xception", apps.xception.preprocess_input,
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", _KERAS_URL + "xception/",
        min_size=71)
    add("InceptionV3", apps.InceptionV3, "inception_v3", apps.inception_v3.preprocess_input,
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_URL + "inception_v3/", min_size=75)
    add("InceptionResNetV2", apps.InceptionResNetV2, "inception_resnet_v2",
        apps.inception_resnet_v2.preprocess_input,
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_URL + "inception_resnet_v2/", min_size=75)
    for depth in (16, 19):
        add(f"VGG{depth}", getattr(apps, f"VGG{depth}"), "vgg",
            getattr(apps, f"vgg{depth}").preprocess_input,
            f"vgg{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_URL + f"vgg{depth}/")
    return {_key(entry.name): entry for entry in entries}


def _key(name):
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


APPLICATIONS = _catalogue()

# Block-aware groups for each family, bottom to top. They match only the names the
# applications set explicitly: auto-generated names (`conv2d_17`, `add_3`) depend on how many
# layers the process created before, and such layers join the group of the layer before them.
_RESNET = GroupRules(
    patterns=(
        (r"conv1_|pool1_", "stem"),
        (r"(conv[2-5])_", r"\1"),
        # ResNetV2's final BatchNorm and ReLU close the last stage.
        (r"post_", "conv5"),
    )
)
_EFFICIENTNET = GroupRules(
    patterns=((r"stem_", "stem"), (r"(block\d+)[a-z]+_", r"\1"), (r"top_", "top"))
)
# MobileNets are grouped by resolution: `stageK` runs at 1/2**(K+1) of the input size.
_MOBILENET = GroupRules(
    patterns=(
        (r"conv1|conv_(dw|pw)_1_", "stem"),
        (r"conv_(pad|dw|pw)_[23](_|$)", "stage1"),
        (r"conv_(pad|dw|pw)_[45](_|$)", "stage2"),
        (r"conv_(pad|dw|pw)_([6-9]|1[01])(_|$)", "stage3"),
        (r"conv_(pad|dw|pw)_1[23](_|$)", "stage4"),
    )
)
_MOBILENET_V2 = GroupRules(
    patterns=(
        (r"Conv1|bn_Conv1|expanded_conv_", "stem"),
        (r"block_[12]_", "stage1"),
        (r"block_[3-5]_", "stage2"),
        (r"block_([6-9]|1[0-2])_", "stage3"),
        (r"block_1[3-6]_", "stage4"),
        (r"Conv_1|out_relu", "top"),
    )
)
_MOBILENET_V3_SMALL = GroupRules(
    patterns=(
        (r"expanded_conv_[12]_", "stage2"),
        (r"expanded_conv_[3-7]_", "stage3"),
        (r"expanded_conv_([89]|10)_", "stage4"),
        # The first block (no number) already halves the resolution.
        (r"expanded_conv_", "stage1"),
        (r"conv_1", "top"),
        (r"conv(_bn)?$", "stem"),
    )
)
_MOBILENET_V3_LARGE = GroupRules(
    patterns=(
        (r"expanded_conv_[12]_", "stage1"),
        (r"expanded_conv_[3-5]_", "stage2"),
        (r"expanded_conv_([6-9]|1[01])_", "stage3"),
        (r"expanded_conv_1[2-4]_", "stage4"),
        (r"expanded_conv_", "stem"),
        (r"conv_1", "top"),
        (r"conv(_bn)?$", "stem"),
    )
)
# ConvNeXt names start with the model name (`convnext_tiny_...`). A downsampling block opens
# the next stage; the final LayerNormalization has no name of its own and stays in stage3.
_CONVNEXT = GroupRules(
    patterns=(
        (r".*_prestem_normalization$|.*_stem$", "stem"),
        (r".*_stage_(\d+)_block_", r"stage\1"),
        (r".*_downsampling_block_0$", "stage1"),
        (r".*_downsampling_block_1$", "stage2"),
        (r".*_downsampling_block_2$", "stage3"),
    )
)
# A transition (`poolN_*`) closes dense block N.
_DENSENET = GroupRules(
    patterns=(
        (r"conv1_|pool1$", "stem"),
        (r"(conv[2-5])_", r"\1"),
        (r"pool([2-4])_", r"conv\1"),
        (r"(bn|relu)$", "top"),
    )
)
_XCEPTION = GroupRules(patterns=((r"(block\d+)_", r"\1"),))
_VGG = GroupRules(patterns=((r"(block\d+)_", r"\1"),))

FAMILY_RULES = {
    "resnet": _RESNET,
    "resnet_v2": _RESNET,
    "efficientnet": _EFFICIENTNET,
    "efficientnet_v2": _EFFICIENTNET,
    "mobilenet": _MOBILENET,
    "mobilenet_v2": _MOBILENET_V2,
    "mobilenet_v3_small": _MOBILENET_V3_SMALL,
    "mobilenet_v3_large": _MOBILENET_V3_LARGE,
    "convnext": _CONVNEXT,
    "densenet": _DENSENET,
    "xception": _XCEPTION,
    "inception_v3": GroupRules(ends=r"mixed\d+$"),
    # The branch convolutions of InceptionResNetV2 have generated names, so its groups are
    # closed by the named layers that end each resolution stage.
    "inception_resnet_v2": GroupRules(ends=r"(mixed_5b|mixed_6a|mixed_7a|conv_7b_ac)$"),
    "vgg": _VGG,
    # tfft's own compact CNNs (`tfft.modalities.audio.cnn`, `tfft.modalities.image.cnn`) name their
    # blocks as VGG does.
    "audio_cnn": _VGG,
    "image_cnn": _VGG,
}


def family_rules(family):
    """The `GroupRules` of a family, or a `BackboneError` listing the known families.

    Example:
        >>> family_rules("resnet").patterns[0]
        ('conv1_|pool1_', 'stem')
    """
    if family not in FAMILY_RULES:
        raise BackboneError(
            f"Unknown backbone family '{family}'. Known families: {sorted(FAMILY_RULES)}. "
            f"Received: family={family!r}"
        )
    return FAMILY_RULES[family]


def find_application(name):
    """The catalogue entry for `name` (any case; `_` and `-` ignored), or None.

    Example:
        >>> find_application("resnet-50").name
        'ResNet50'
    """
    return APPLICATIONS.get(_key(str(name)))


def get_application(name):
    """Look up an application by name, ignoring case, `_` and `-`.

    Raises:
        BackboneError: for an unknown name, with the closest known names.

    Example:
        >>> get_application("efficientnet_b0").name
        'EfficientNetB0'
    """
    spec = find_application(name)
    if spec is None:
        close = difflib.get_close_matches(_key(str(name)), list(APPLICATIONS), n=3, cutoff=0.6)
        hint = (
            f"Did you mean {', '.join(APPLICATIONS[c].name for c in close)}? "
            if close
            else ""
        )
        raise BackboneError(
            f"Unknown backbone '{name}'. {hint}Known backbones: "
            f"{', '.join(spec.name for spec in APPLICATIONS.values())}, or a path to a "
            f".keras file. Received: name={str(name)!r}"
        )
    return spec


def weights_cache_dir():
    """The folder where `keras.utils.get_file` keeps application weights.

    `$KERAS_HOME/models` if `KERAS_HOME` is set, else `~/.keras/models`; like Keras, a home
    that is not writable (or does not exist) becomes `/tmp/.keras`. `KERAS_HOME` is read at
    each call: Keras itself reads it once, when it is imported.

    Example:
        >>> weights_cache_dir()
        '/home/me/.keras/models'
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        if not os.access(base, os.W_OK):
            base = "/tmp"
        home = os.path.join(base, ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return os.path.join(home, "models")


def cached_imagenet_weights(spec, input_size=224):
    """Path of the application's ImageNet no-top weights in the Keras cache, or None."""
    path = os.path.join(weights_cache_dir(), spec.weights_file_name(input_size))
    return path if os.path.isfile(path) else None


def resolve_imagenet_weights(spec, input_size=224):
    """Where the ImageNet weights of an application come from.

    Args:
        spec: an `Application`.
        input_size: the input size the backbone is built for (MobileNet and MobileNetV2 have
            weights per input size).

    Returns:
        The value for the constructor's `weights`: the cached file's path, or `"imagenet"`
        to let Keras download the file (`build_application` turns a failed download into a
        `BackboneError`).

    Example:
        >>> resolve_imagenet_weights(get_application("ResNet50"))
        '/home/me/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'
    """
    return cached_imagenet_weights(spec, input_size) or "imagenet"


def _reason(error):
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _check_input(spec, input_size, channels, weights):
    for key, value in (("input_size", input_size), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BackboneError(f"{key} must be a positive int. Received: {key}={value!r}")
    if input_size < spec.min_size:
        raise BackboneError(
            f"{spec.name} needs an input of at least {spec.min_size}x{spec.min_size} pixels. "
            f"Use a larger image size. Received: input_size={input_size}"
        )
    if weights == "imagenet" and channels != 3:
        raise BackboneError(
            f"ImageNet weights of {spec.name} expect 3-channel (RGB) images; use weights=None "
            f"or 3 channels. Received: channels={channels}"
        )


def _weights_source(spec, weights, input_size):
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        return resolve_imagenet_weights(spec, input_size)
    if not isinstance(weights, (str, os.PathLike)):
        raise BackboneError(
            "weights must be 'imagenet', None or the path to a weights file. "
            f"Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise BackboneError(
            f"Weights file '{path}' for {spec.name} does not exist. Pass an existing file, "
            f"'imagenet' or None. Received: weights={path!r}"
        )
    return path


def build_application(name, weights="imagenet", input_size=224, channels=3):
    """Build a Keras application without its classifier, as a `Backbone`.

    Args:
        name: an application name, any case (`"resnet50"`, `"EfficientNetB0"`).
        weights: `"imagenet"` (from the Keras cache, else downloaded), None (random
            initialisation) or the path of a weights file (`.h5`, `.weights.h5`, `.keras`).
        input_size: height and width of the input images, or a `(height, width)` pair
            (a spectrogram's time and mel axes, say).
        channels: input channels.

    Returns:
        A `Backbone` with the application's preprocessing and its family's layer groups.

    Raises:
        BackboneError: unknown name, input too small, missing weights file, or ImageNet
            weights neither cached nor downloadable.

    Example:
        >>> backbone = build_application("MobileNetV3Small", weights=None, input_size=96)
        >>> backbone.family
        'mobilenet_v3_small'
    """
    spec = get_application(name)
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    _check_input(spec, height, channels, weights)
    _check_input(spec, width, channels, weights)
    # Size-specific weight files (MobileNet) follow the height, as Keras does for rows.
    input_size = height
    source = _weights_source(spec, weights, input_size)
    try:
        model = spec.constructor(
            include_top=False,
            weights=source,
            input_shape=(height, width, channels),
            pooling=None,
        )
    except Exception as error:
        # Keras reports a failed download as a bare `Exception("URL fetch failure ...")`.
        if source == "imagenet":
            raise BackboneError(
                f"ImageNet weights of {spec.name} are not cached and could not be downloaded "
                f"({_reason(error)}). Fetch {spec.weights_file_url(input_size)} and put it in "
                f"{weights_cache_dir()} as {spec.weights_file_name(input_size)}, or use "
                "weights=None."
            ) from error
        if source is not None:
            raise BackboneError(
                f"Cannot load weights file '{source}' into {spec.name} ({_reason(error)}). "
                "Check that the file holds weights of this application without its top."
            ) from error
        raise
    return Backbone(
        model=model,
        preprocess=spec.preprocess,
        rules=FAMILY_RULES[spec.family],
        family=spec.family,
        name=spec.name,
        pretrained=weights is not None,
    )
