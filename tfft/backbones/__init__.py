"""Backbones: a pretrained feature extractor, how to preprocess its input, how to cut it.

`build_backbone` is the one entry point: a name from the Keras applications catalogue
(`"resnet50"`, `"EfficientNetB0"`) or the path of a `.keras` file.

Example:
    >>> backbone = build_backbone("resnet50", weights=None, input_size=64)
    >>> groups = layer_groups(backbone.model, rules=backbone.rules)
"""

import dataclasses
import os
from typing import Callable, Optional

import keras

from tfft.errors import BackboneError
from tfft.freezing import GroupRules


@dataclasses.dataclass
class Backbone:
    """A feature extractor and what tfft needs to fine-tune it.

    Args:
        model: a functional `keras.Model` from images to a feature map (no pooling, no head).
        preprocess: applied in the data pipeline to float32 image batches in 0-255, or None.
        rules: the family's `GroupRules`, or None to split the model by depth.
        family: the family name (`"resnet"`, `"efficientnet"`, `"custom"`).
        name: a display name (`"ResNet50"`).
        pretrained: whether the weights come from pretraining (False for `weights=None`):
            BatchNorm statistics are kept frozen by default only when they are pretrained.
        note: a line to show the user about the weights (how `pretrained` was decided).

    Example:
        >>> backbone = build_backbone("MobileNetV3Small", weights=None, input_size=96)
        >>> backbone.model.output.shape
        (None, 3, 3, 576)
    """

    model: keras.Model
    preprocess: Optional[Callable]
    rules: Optional[GroupRules]
    family: str
    name: str
    pretrained: bool = True
    note: str = ""


# The builders import `Backbone` from this package, so they come after it.
from tfft.backbones import applications  # noqa: E402
from tfft.backbones import files  # noqa: E402
from tfft.backbones.applications import FAMILY_RULES  # noqa: E402,F401
from tfft.backbones.applications import build_application  # noqa: E402,F401
from tfft.backbones.files import load_backbone_file  # noqa: E402,F401

_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")


def _is_file(name):
    # `.h5` goes to the file loader too, whose error explains that a `.keras` file is needed.
    return isinstance(name, os.PathLike) or (
        isinstance(name, str) and (name.endswith(_FILE_SUFFIXES) or os.path.isfile(name))
    )


def build_backbone(name, weights="pretrained", input_size=224, family=None, modality="image", sequence_length=128,
                   pooling="avg", spectrogram_shape=None, load_weights=True):
    """Build a backbone: a Keras application, a `.keras` file or a keras-hub text encoder.

    Args:
        name: an application name (`"resnet50"`, any case), `"image_cnn"` (tfft's compact
            CNN, trained from scratch), the path of a `.keras` file, or
            a text encoder: a short name (`"minilm-l6"`), a keras-hub / Hugging Face model
            directory, a `kaggle://` / `hf://` handle or a keras-hub preset name.
        weights: `"pretrained"` (ImageNet for an application, the preset's for an encoder),
            `"imagenet"`, None, or for an application a weights file path; a `.keras` file
            carries its own weights and ignores it.
        input_size: input height and width of an application; a `.keras` file keeps its own.
        family: the layer-group family of a `.keras` file built with application layer
            names (`"resnet"`); an application knows its family.
        modality: `"image"` (applications), `"text"` (keras-hub encoders) or `"audio"`
            (`"audio_cnn"` or an application on spectrograms); a `.keras` file serves any.
        sequence_length: tokens per text (text encoders only).
        pooling: `"avg"` or `"cls"`: how a text encoder turns tokens into one vector.
        spectrogram_shape: audio only: `(time, mels)` of the log-mel spectrograms.
        load_weights: False builds the architecture only (a dry run); `pretrained` still
            says whether a real build would start from pretrained weights.

    Returns:
        A `Backbone`.

    Example:
        >>> build_backbone("ResNet50", weights=None, input_size=64).family
        'resnet'
        >>> build_backbone("runs/mri/model.keras", family="resnet").name
        'resnet50'
    """
    if _is_file(name):
        backbone = files.load_backbone_file(name, family=family)
        if modality == "audio":
            _check_spectrogram_input(backbone, spectrogram_shape)
        return backbone
    if modality == "audio":
        from tfft.modalities.audio import cnn as audio

        if name == audio.AUDIO_CNN:
            _no_weights(name, weights)
            return audio.build_audio_cnn(tuple(spectrogram_shape) + (1,))
        backbone = _application(name, weights, tuple(spectrogram_shape), load_weights)
        backbone.preprocess = audio.spectrogram_to_image(backbone.preprocess)
        return backbone
    if modality == "text":
        from tfft.modalities.text import encoders as hub

        return hub.build_text_encoder(name, weights=weights, sequence_length=sequence_length, pooling=pooling,
                                      load_weights=load_weights)
    if name == "image_cnn":
        from tfft.modalities.image.cnn import build_image_cnn

        _no_weights("image_cnn", weights)
        return build_image_cnn(input_size)
    spec = applications.get_application(name)
    if family is not None and family != spec.family:
        raise BackboneError(
            f"{spec.name} belongs to the '{spec.family}' family; `family` only applies to "
            f".keras files. Received: family={family!r}"
        )
    return _application(name, weights, input_size, load_weights)


def _no_weights(name, weights):
    if weights is not None:
        raise BackboneError(
            f"{name} has no pretrained weights: set backbone.weights=None to train it, then fine-tune "
            f"its model.keras for transfer. Received: weights={weights!r}"
        )


def _application(name, weights, input_size, load_weights):
    weights = "imagenet" if weights == "pretrained" else weights
    backbone = applications.build_application(name, weights=weights if load_weights else None, input_size=input_size)
    backbone.pretrained = weights is not None
    return backbone


def _check_spectrogram_input(backbone, spectrogram_shape):
    expected = tuple(spectrogram_shape) if spectrogram_shape else None
    got = tuple(backbone.model.input_shape[1:3])
    if expected and got != expected:
        raise BackboneError(
            f"Backbone '{backbone.name}' takes spectrograms of {got[0]} frames x {got[1]} mels, but this recipe "
            f"makes {expected[0]} x {expected[1]}: use the sample_rate, duration, hop_length and n_mels it was "
            "trained with."
        )
    channels = backbone.model.input_shape[-1]
    if channels == 3:
        from tfft.modalities.audio import cnn as audio

        # Fed as tfft feeds an ImageNet CNN spectrograms (an application fine-tuned earlier).
        backbone.preprocess = audio.spectrogram_to_image(backbone.preprocess)
    elif channels != 1:
        raise BackboneError(
            f"Backbone '{backbone.name}' takes {channels} input channels; spectrograms have 1 (or 3 for an "
            "image CNN)."
        )
    else:
        backbone.preprocess = None


def imagenet_weights_available(name, input_size=224):
    """Whether `build_backbone(name)` gets its pretrained weights without a download.

    For an application, whether its ImageNet weights are in the Keras cache (only the cache
    is checked; nothing is downloaded). A `.keras` file carries its own weights: True.

    Example:
        >>> if not imagenet_weights_available("resnet50"):
        ...     print("ImageNet weights are not available offline; continuing from random "
        ...           "initialisation")
    """
    if _is_file(name):
        return True
    spec = applications.get_application(name)
    return applications.cached_imagenet_weights(spec, input_size) is not None

