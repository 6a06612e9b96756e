"""tfft: staged, layer-wise transfer-learning fine-tuning on Keras 3 and TensorFlow.

Example:
    >>> import tfft
    >>> recipe = tfft.load_recipe("recipes/tumor_resnet.py", overrides=["data.path=~/mri"])
    >>> metrics = tfft.Trainer(recipe).run()
"""

from tfft.errors import BackboneError, DataError, GroupError, RecipeError, TfftError
from tfft.freezing import GroupRules, LayerGroup, apply_freezing, layer_groups
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
