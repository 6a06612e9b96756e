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
        metadata: the `tfft.json` of a `.keras` file tfft saved (`tfft.model_file`), or None.
        source: the `.keras` file the model was loaded from, or None.
        lora_layers: names of the layers LoRA adapts in a group (`tfft.adapters`): a
            keras-hub encoder's `default_lora_layer_names()`; None: every Dense,
            EinsumDense and Conv1D/2D/3D layer.

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
    metadata: Optional[dict] = None
    source: Optional[str] = None
    lora_layers: Optional[tuple] = None

    @property
    def image_size(self):
        """`(height, width)` when the model's input fixes them, else None."""
        shape = self.model.input_shape
        if not isinstance(shape, tuple) or len(shape) != 4 or None in shape[1:3]:
            return None
        return tuple(shape[1:3])


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


def build_backbone(name, weights="pretrained", input_size=224, family=None, modality="image", load_weights=True,
                   **options):
    """Build a backbone: a `.keras` file, or what the modality builds by name (a Keras
    application, tfft's `image_cnn` / `audio_cnn`, a keras-hub text encoder).

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
        modality: `data.kind`: `"image"`, `"text"` or `"audio"` (`tfft.modalities`).
        load_weights: False builds the architecture only (a dry run); `pretrained` still
            says whether a real build would start from pretrained weights.
        **options: what the modality needs besides (`Modality.backbone_options`): text
            `sequence_length` and `pooling`, audio `spectrogram_shape` `(time, mels)`.

    Returns:
        A `Backbone`.

    Example:
        >>> build_backbone("ResNet50", weights=None, input_size=64).family
        'resnet'
        >>> build_backbone("runs/mri/model.keras", family="resnet").name
        'resnet50'
    """
    from tfft import modalities

    kind = modalities.get(modality)
    if _is_file(name):
        return kind.file_backbone(files.load_backbone_file(name, family=family), input_size=input_size, **options)
    return kind.build_backbone(name, weights=weights, input_size=input_size, family=family,
                               load_weights=load_weights, **options)


def application_backbone(name, weights, input_size, load_weights, family=None):
    """A Keras application as a `Backbone`; `input_size` is a size or `(height, width)`."""
    spec = applications.get_application(name)
    if family is not None and family != spec.family:
        raise BackboneError(
            f"{spec.name} belongs to the '{spec.family}' family; `family` only applies to "
            f".keras files. Received: family={family!r}"
        )
    weights = "imagenet" if weights == "pretrained" else weights
    backbone = applications.build_application(name, weights=weights if load_weights else None, input_size=input_size)
    backbone.pretrained = weights is not None
    return backbone


def no_weights(name, weights):
    """Refuse pretrained weights for a network tfft only builds from scratch."""
    if weights is not None:
        raise BackboneError(
            f"{name} has no pretrained weights: set backbone.weights=None to train it, then fine-tune "
            f"its model.keras for transfer. Received: weights={weights!r}"
        )


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

