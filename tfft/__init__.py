"""tfft: staged, layer-wise transfer-learning fine-tuning on Keras 3 and TensorFlow.

Example:
    >>> import tfft
    >>> recipe = tfft.load_recipe("recipes/tumor_resnet.py", overrides=["data.path=~/mri"])
    >>> metrics = tfft.Trainer(recipe).run()
"""

import os
import sys


def _import_tensorflow_quietly():
    """Import TensorFlow without its C++ start-up lines (oneDNN notes, CUDA probing).

    TensorFlow 2.21 writes them through absl before any log setting applies, so stderr is
    closed for the import alone. `TF_CPP_MIN_LOG_LEVEL=0` (or 1) shows them again.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] < "2":
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # probes CUDA, which logs when absent
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

# Registers the layers tfft adds to text encoders, so a saved text model loads after
# `import tfft, keras_hub`.
from tfft.modalities.text import encoders as _encoders  # noqa: F401
from tfft.errors import BackboneError, DataError, GroupError, RecipeError, TfftError
from tfft.freezing import GroupRules, LayerGroup, apply_freezing, layer_groups
from tfft.lora import LoRA
from tfft.optimizers import SGD, AdamW
from tfft.recipe import Recipe, load_recipe
from tfft.schedules import ScheduleConfig, Stage, StageLearningRate, build_stages
from tfft.trainer import StagePlan, Trainer

__version__ = "0.1.0"

__all__ = [
    "AdamW",
    "BackboneError",
    "DataError",
    "GroupError",
    "GroupRules",
    "LayerGroup",
    "LoRA",
    "Recipe",
    "RecipeError",
    "SGD",
    "ScheduleConfig",
    "Stage",
    "StageLearningRate",
    "StagePlan",
    "TfftError",
    "Trainer",
    "apply_freezing",
    "build_stages",
    "layer_groups",
    "load_recipe",
]
