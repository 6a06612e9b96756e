"""Backbones from a user's `.keras` file: a bare feature extractor or a tfft classifier.

A classifier tfft saved (a functional model named `tfft_classifier` whose second layer is
the backbone, nested) is unwrapped, so a fine-tuned model can be fine-tuned again.
"""

import os

import keras

from tfft.backbones import Backbone
from tfft.backbones.applications import FAMILY_RULES, family_rules, find_application
from tfft.batchnorm import untrained_statistics
from tfft.errors import BackboneError
from tfft.freezing import GroupRules
from tfft.model_file import group_patterns, read_metadata

CLASSIFIER_NAME = "tfft_classifier"


def _unwrap_classifier(model):
    if model.name == CLASSIFIER_NAME:
        # After the input layer(s) (several for a text encoder) comes the nested backbone.
        nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        if nested:
            return nested[0]
    return model


def _functional(model, path):
    if isinstance(model, keras.Sequential):
        # A Sequential keeps its own layers when called as a functional graph.
        return keras.Model(model.inputs, model.outputs, name=model.name)
    if not getattr(model, "inputs", None):
        raise BackboneError(
            f"Backbone file '{path}' holds a subclassed model; tfft needs a functional or "
            "Sequential model to cut it into layer groups."
        )
    return model


def load_backbone_file(path, family=None):
    """Load a backbone from a `.keras` file.

    Args:
        path: a `.keras` file saved with `model.save(...)`: a feature extractor, or a
            classifier saved by tfft (its nested backbone is returned).
        family: the family whose layer-group rules fit the model's layer names
            (`"resnet"`, `"efficientnet"`, ... see `FAMILY_RULES`), or None: the groups a
            tfft `model.keras` was fine-tuned with (its `tfft.json`), else the family of a
            model saved under a known name (`resnet50`, `audio_cnn`), else a depth split.

    Returns:
        A `Backbone` without preprocessing: the images reach the model as float32 in 0-255,
        so a model that needs scaling should contain it.

    Raises:
        BackboneError: the file is missing, is not a `.keras` file or cannot be read, or
            the family is unknown.

    Example:
        >>> tfft.testing.tiny_resnet(32).save("tiny.keras")
        >>> load_backbone_file("tiny.keras", family="resnet").rules is not None
        True
    """
    path = os.fspath(path)
    rules = family_rules(family) if family is not None else None
    if not path.endswith(".keras"):
        raise BackboneError(
            f"Backbone file '{path}' is not a .keras file. Save the model with "
            f"model.save('name.keras') and pass that file. Received: name={path!r}"
        )
    if not os.path.isfile(path):
        raise BackboneError(f"Backbone file '{path}' does not exist. Received: name={path!r}")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:
        lines = str(error).strip().splitlines()
        raise BackboneError(
            f"Cannot read backbone file '{path}' ({type(error).__name__}: "
            f"{lines[0] if lines else ''}). Custom layers must be registered with "
            "@keras.saving.register_keras_serializable before loading."
        ) from error
    model = _functional(_unwrap_classifier(model), path)
    metadata = read_metadata(path)
    if family is None and metadata and metadata.get("groups"):
        # A model tfft saved brings the groups it was fine-tuned with.
        family = metadata.get("family") or "custom"
        rules = GroupRules(patterns=group_patterns(metadata["groups"]))
    elif family is None:
        family = _family_of(model.name)
        rules = family_rules(family) if family else None
    # A Keras application fine-tuned earlier still wants its own pixel preprocessing.
    spec = find_application(model.name)
    # The BatchNorm policy follows the weights, not the file type: a model saved before
    # any training holds BatchNorm's initial statistics, and freezing those would freeze
    # noise.
    untrained = untrained_statistics(model)
    note = (f"{path}: every BatchNorm layer holds its initial statistics (mean 0, variance 1), so these weights "
            "were never trained: treated as not pretrained, BatchNorm trains (schedule.train_bn='auto')") if untrained else ""
    return Backbone(
        model=model,
        preprocess=spec.preprocess if spec is not None else None,
        rules=rules,
        family=family or "custom",
        name=model.name,
        pretrained=not untrained,
        note=note,
        metadata=metadata,
        source=path,
        # The layers LoRA adapts in the encoder this model was fine-tuned from (keras-hub's).
        lora_layers=tuple(metadata["lora_layers"]) if metadata and metadata.get("lora_layers") else None,
    )


def _family_of(model_name):
    """The family of a model saved under a name tfft knows (`resnet50`, `audio_cnn`), else None."""
    if model_name in FAMILY_RULES:
        return model_name
    spec = find_application(model_name)
    return spec.family if spec is not None else None
