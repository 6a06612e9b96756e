"""Stages of a fine-tuning schedule and the learning rate within each stage.

A schedule is a list of `Stage`s run one after the other on the same model and the same
optimizer. Each stage says which layer groups train, for how many epochs, at what rate and
with what shape of rate over its steps, and how the rate is spread over the groups.

The built-in schedules:

- `two_phase` (the Keras transfer-learning guide): the head alone at `lr`, then the head and
  the `unfreeze` top groups at `finetune_lr`.
- `gradual_unfreezing` (ULMFiT): the head, then one more group from the top every
  `stage_epochs`, until every group trains.
- `chain_thaw` (DeepMoji): the head, then each group alone from the bottom up, then all.
- `custom`: the stages you write.

The engine knows only groups in order; it has no notion of images, text or sound.
"""

import dataclasses
import math
from typing import Union

import keras
import numpy as np

from tfft.errors import RecipeError
from tfft.freezing import HEAD, resolve_group_names

SHAPES = ("constant", "warmup_cosine", "one_cycle", "slanted_triangular")
KINDS = ("two_phase", "gradual_unfreezing", "chain_thaw", "custom")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a schedule.

    Args:
        name: shown in logs, plans and checkpoints.
        epochs: epochs of this stage.
        train: names or tokens of the groups that train (see
            `tfft.freezing.resolve_group_names`): `"head"`, a group name, `"top:N"`,
            `"backbone"`, `"all"`.
        lr: peak learning rate of the stage (the head's; groups scale it).
        shape: how the rate moves over the stage's steps: `"constant"`, `"warmup_cosine"`,
            `"one_cycle"` or `"slanted_triangular"`.
        warmup: fraction of the stage's steps spent warming up (for `slanted_triangular`,
            its cut fraction).
        decay: discriminative (layer-wise) decay: a trained group at depth `d` below the
            head gets `lr * decay**d`. 1 turns it off; ULMFiT's factor 2.6 is `1 / 2.6`,
            ELECTRA's layer-wise decay 0.8 is `0.8`.
        multipliers: `{group: factor}` applied on top of `decay`; 0 holds a group still.
        train_bn: train BatchNorm layers of trained groups (default: keep them frozen).
        early_stopping: stop the stage after this many epochs without a better
            `train.monitor` (default the validation loss); 0 turns it off.

    Example:
        >>> Stage("finetune", epochs=3, train=("head", "top:2"), lr=1e-4,
        ...       shape="warmup_cosine", warmup=0.1)
    """

    name: str
    epochs: int
    train: tuple
    lr: float
    shape: str = "constant"
    warmup: float = 0.0
    decay: float = 1.0
    multipliers: tuple = ()
    train_bn: bool = False
    early_stopping: int = 0

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise RecipeError(f"Stage '{self.name}' needs at least one epoch. Received: epochs={self.epochs!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise RecipeError(f"Stage '{self.name}' needs a positive learning rate. Received: lr={self.lr!r}")
        if self.shape not in SHAPES:
            raise RecipeError(f"Stage '{self.name}': unknown learning-rate shape. Expected one of {list(SHAPES)}. Received: shape={self.shape!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise RecipeError(f"Stage '{self.name}': warmup is a fraction of the stage in [0, 1). Received: warmup={self.warmup!r}")
        if not 0.0 < self.decay <= 1.0:
            raise RecipeError(
                f"Stage '{self.name}': decay is the rate factor per group below the head, in (0, 1] "
                f"(ULMFiT's 2.6 is decay={1 / 2.6:.3f}). Received: decay={self.decay!r}"
            )
        for group, factor in dict(self.multipliers).items():
            if not (isinstance(factor, (int, float)) and factor >= 0):
                raise RecipeError(f"Stage '{self.name}': multiplier of '{group}' must be >= 0. Received: {factor!r}")

    def trained_groups(self, names):
        """The set of group names (head included) that train, for backbone groups `names`."""
        return resolve_group_names(list(self.train), list(names))

    def factors(self, names):
        """Learning-rate factor of every group, head included, for backbone groups `names`.

        Frozen groups get 0. Depth counts trained groups only, so a gap of frozen groups
        does not decay the rate further.
        """
        trained = self.trained_groups(names)
        multipliers = dict(self.multipliers)
        unknown = set(multipliers) - set(names) - {HEAD}
        if unknown:
            raise RecipeError(
                f"Stage '{self.name}': multipliers name unknown layer groups {sorted(unknown)}. "
                f"Known groups: {list(names) + [HEAD]}"
            )
        factors, depth = {}, 0
        for name in [HEAD] + list(reversed(names)):
            if name in trained:
                factors[name] = self.decay**depth * multipliers.get(name, 1.0)
                depth += 1
            else:
                factors[name] = 0.0
        return factors


@dataclasses.dataclass
class ScheduleConfig:
    """The `schedule` section of a recipe.

    Args:
        kind: `"two_phase"`, `"gradual_unfreezing"`, `"chain_thaw"` or `"custom"`.
        lr: learning rate of the head-only stage.
        finetune_lr: peak learning rate of stages that train backbone groups.
        head_epochs: epochs of the head-only stage.
        epochs: total epochs of the schedule (`two_phase`, `gradual_unfreezing`: the last
            stage runs until this total is reached).
        unfreeze: `two_phase`: how many top groups train in the second phase (0: all).
        stage_epochs: `gradual_unfreezing`, `chain_thaw`: epochs of each unfreezing step.
        shape: learning-rate shape of backbone stages.
        head_shape: learning-rate shape of the head-only stage.
        warmup: warmup fraction of backbone stages. A short warmup matters: Adam's bias
            correction uses the global step, so a group unfrozen late would otherwise take
            a large first step.
        decay: discriminative decay of backbone stages (see `Stage`).
        train_bn: train BatchNorm in unfrozen groups: True, False, or `"auto"`: only when
            the backbone has no pretrained weights (random statistics are not worth keeping).
        precise_bn: after a stage in which BatchNorm trained, recompute its moving
            statistics over this many training batches with the final weights (0: off).
        early_stopping: patience in epochs for every stage; 0 turns it off.
        stages: `custom`: a list of dicts with the fields of `Stage`.

    Example:
        >>> ScheduleConfig(kind="gradual_unfreezing", epochs=6, decay=1 / 2.6)
    """

    kind: str = "two_phase"
    lr: float = 1e-3
    finetune_lr: float = 1e-4
    head_epochs: int = 2
    epochs: int = 6
    unfreeze: int = 2
    stage_epochs: int = 1
    shape: str = "warmup_cosine"
    head_shape: str = "constant"
    warmup: float = 0.1
    decay: float = 1.0
    train_bn: Union[bool, str] = "auto"
    precise_bn: int = 20
    early_stopping: int = 0
    stages: list = dataclasses.field(default_factory=list)


def build_stages(config, names):
    """Turn a `ScheduleConfig` into the list of `Stage`s for backbone groups `names`.

    Args:
        config: a `ScheduleConfig`.
        names: backbone group names, bottom to top (the head is implied).

    Returns:
        A list of `Stage`, every `train` spec checked against `names`.

    Example:
        >>> [s.name for s in build_stages(ScheduleConfig(kind="chain_thaw"), ["a", "b"])]
        ['head', 'thaw_a', 'thaw_b', 'all']
    """
    names = list(names)
    if config.kind not in KINDS:
        raise RecipeError(f"Unknown schedule kind. Expected one of {list(KINDS)}. Received: schedule.kind={config.kind!r}")
    if config.train_bn not in (True, False, "auto"):
        raise RecipeError(f"schedule.train_bn must be True, False or 'auto'. Received: schedule.train_bn={config.train_bn!r}")
    # "auto" assumes pretrained statistics here; the Trainer resolves it from the backbone.
    common = dict(train_bn=config.train_bn is True, early_stopping=config.early_stopping)
    backbone = dict(common, shape=config.shape, warmup=config.warmup, decay=config.decay)
    head = Stage("head", config.head_epochs, (HEAD,), config.lr, shape=config.head_shape, **common)
    if config.kind == "two_phase":
        top = f"top:{config.unfreeze}" if config.unfreeze else "backbone"
        rest = config.epochs - config.head_epochs
        _check_epochs(config, rest, "the head stage")
        stages = [head, Stage("finetune", rest, (HEAD, top), config.finetune_lr, **backbone)]
    elif config.kind == "gradual_unfreezing":
        stages = [head]
        for count in range(1, len(names) + 1):
            stages.append(Stage(f"unfreeze_{names[-count]}", config.stage_epochs, (HEAD, f"top:{count}"), config.finetune_lr, **backbone))
        used = config.head_epochs + config.stage_epochs * len(names)
        _check_epochs(config, config.epochs - used + config.stage_epochs, f"{len(names)} unfreezing steps")
        stages[-1] = dataclasses.replace(stages[-1], epochs=config.epochs - used + config.stage_epochs)
    elif config.kind == "chain_thaw":
        stages = [head]
        stages += [Stage(f"thaw_{n}", config.stage_epochs, (n,), config.finetune_lr, **backbone) for n in names]
        stages.append(Stage("all", config.stage_epochs, ("all",), config.finetune_lr, **backbone))
    else:
        if not config.stages:
            raise RecipeError("schedule.kind='custom' needs schedule.stages: a list of dicts with name, epochs, train, lr, ...")
        stages = [_stage_from_dict(i, d, backbone) for i, d in enumerate(config.stages)]
    for stage in stages:
        stage.factors(names)  # checks group names and multipliers now, not mid-run
    return stages


def _check_epochs(config, remaining, what):
    if remaining < 1:
        raise RecipeError(
            f"schedule.epochs={config.epochs} leaves no epoch after {what}: raise schedule.epochs "
            f"or shorten the earlier stages."
        )


def _stage_from_dict(index, values, defaults):
    fields = {f.name for f in dataclasses.fields(Stage)}
    if not isinstance(values, dict):
        raise RecipeError(f"schedule.stages[{index}] must be a dict. Received: {values!r}")
    unknown = set(values) - fields
    if unknown:
        raise RecipeError(f"schedule.stages[{index}] has unknown keys {sorted(unknown)}. Known keys: {sorted(fields)}")
    missing = {"epochs", "train", "lr"} - set(values)
    if missing:
        raise RecipeError(f"schedule.stages[{index}] misses {sorted(missing)}")
    values = dict(defaults, **values)
    values.setdefault("name", f"stage{index}")
    train = values["train"]
    values["train"] = (train,) if isinstance(train, str) else tuple(train)
    values["multipliers"] = tuple(sorted(dict(values.get("multipliers") or {}).items()))
    return Stage(**values)


def plan_epochs(stages):
    """`(initial_epoch, end_epoch)` of every stage on one continuous epoch axis."""
    bounds, start = [], 0
    for stage in stages:
        bounds.append((start, start + stage.epochs))
        start += stage.epochs
    return bounds


@keras.saving.register_keras_serializable(package="tfft")
class StageLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of one stage, as a function of the optimizer's global step.

    The stage starts at `start_step` (the optimizer's iterations when it begins), so the
    rate follows the stage even if an earlier one stopped early.

    Args:
        lr: peak rate.
        start_step: global step at which the stage begins.
        steps: steps of the stage.
        shape: one of `SHAPES`.
        warmup: warmup fraction (cut fraction for `slanted_triangular`).

    Example:
        >>> schedule = StageLearningRate(1e-3, start_step=100, steps=50, shape="warmup_cosine", warmup=0.1)
        >>> float(schedule(100))  # first step of the stage: 1/5 of the peak
        0.0002
    """

    def __init__(self, lr, start_step, steps, shape="constant", warmup=0.0):
        self.lr = float(lr)
        self.start_step = int(start_step)
        self.steps = max(1, int(steps))
        self.shape = shape
        self.warmup = float(warmup)

    def __call__(self, step):
        t = keras.ops.cast(step, "float32") - float(self.start_step)
        t = keras.ops.clip(t, 0.0, float(self.steps - 1))
        return stage_rate(t, self.lr, self.steps, self.shape, self.warmup, keras.ops)

    def get_config(self):
        return dict(lr=self.lr, start_step=self.start_step, steps=self.steps, shape=self.shape, warmup=self.warmup)


def stage_rate(t, lr, steps, shape, warmup, ops=np):
    """Rate at step `t` (0-based) of a stage of `steps` steps; `ops` is numpy or `keras.ops`."""
    n = float(steps)
    if shape == "slanted_triangular":
        # ULMFiT: a short linear rise to `lr`, a long linear fall to lr / ratio.
        cut_frac, ratio = (warmup or 0.1), 32.0
        cut = max(1.0, math.floor(n * cut_frac))
        p = ops.where(t < cut, t / cut, 1.0 - (t - cut) / max(1.0, n - 1.0 - cut))
        return lr * (1.0 + p * (ratio - 1.0)) / ratio
    if shape == "one_cycle":
        # fastai's fit_one_cycle: cosine from lr/25 up to lr over 25% of the steps, then
        # cosine down to lr/1e5.
        pct = warmup or 0.25
        up = max(1.0, n * pct)
        rise = _cosine(lr / 25.0, lr, ops.minimum(t / up, 1.0), ops)
        fall = _cosine(lr, lr / 1e5, ops.clip((t - up) / max(1.0, n - up), 0.0, 1.0), ops)
        return ops.where(t < up, rise, fall)
    warm = math.floor(n * warmup)
    ramp = (t + 1.0) / float(warm) if warm else 1.0
    if shape == "constant":
        return lr * ops.minimum(ramp, 1.0) if warm else lr + 0.0 * t
    progress = ops.clip((t - warm) / max(1.0, n - warm), 0.0, 1.0)
    after = _cosine(lr, 0.0, progress, ops)
    return ops.where(t < warm, lr * ramp, after) if warm else after


def _cosine(start, end, progress, ops):
    return end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))
