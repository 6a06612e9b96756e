"""Stages of a fine-tuning schedule and the learning rate within each stage.

A schedule is a list of `Stage`s run one after the other on the same model and the same
optimizer. Each stage says which layer groups train, for how many epochs, at what rate and
with what shape of rate over its steps, and how the rate is spread over the groups.

The built-in schedules:

- `two_phase` (the Keras transfer-learning guide): the head alone at `lr`, then the head and
  the `unfreeze` top groups at `finetune_lr`.
- `gradual_unfreezing` (ULMFiT): the head, then one more group from the top every
  `stage_epochs`, until every group trains.
- `chain_thaw` (DeepMoji): the head, then each group beside the head from the bottom up,
  then all.
- `custom`: the stages you write.

With `pairs`, `two_phase` is SetFit's two steps: a pairs stage (`tfft.pairs`), where the
backbone learns from pairs of training examples which share a class, then the head.

Every length is in optimizer steps, resolved from epochs (fractions included) or steps, so a
stage may be shorter than an epoch and a small data set still gets enough steps.

The engine knows only groups in order; it has no notion of images, text or sound.
"""

import dataclasses
import math
from typing import Optional, Union

import keras
import numpy as np

from tfft.errors import RecipeError
from tfft.freezing import HEAD, resolve_group_names
from tfft.lora import LoRA, adapted_groups, adapter_plan, lora_from_recipe

SHAPES = ("constant", "warmup_cosine", "one_cycle", "slanted_triangular")
OBJECTIVES = ("classes", "pairs")
KINDS = ("two_phase", "gradual_unfreezing", "chain_thaw", "custom", "auto")
FIND = "find"  # a stage rate chosen by the learning-rate finder when the stage starts

# The default budget: this many epochs, but at least `min_steps` and at most `max_steps`
# optimizer steps in all. Epochs alone starve small data (50 images at batch 16 are 4 steps
# an epoch) and drown large data; steps alone ignore how much data there is.
DEFAULT_EPOCHS = 6
# Share of the budget the head stage takes when its length is not given.
HEAD_SHARE = {"two_phase": 1 / 3, "gradual_unfreezing": 1 / 4, "chain_thaw": 1 / 4}
# Share of the total the pairs stage of `two_phase` with `pairs` takes; the head the rest.
PAIR_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a schedule.

    Args:
        name: shown in logs, plans and checkpoints.
        steps: optimizer steps of this stage.
        train: names or tokens of the groups that train (see
            `tfft.freezing.resolve_group_names`): `"head"`, a group name, `"top:N"`,
            `"backbone"`, `"all"`.
        lr: peak learning rate of the stage (the head's; groups scale it), or `"find"`:
            the learning-rate finder picks it when the stage starts.
        shape: how the rate moves over the stage's steps: `"constant"`, `"warmup_cosine"`,
            `"one_cycle"` or `"slanted_triangular"`.
        warmup: fraction of the stage's steps spent warming up (for `slanted_triangular`,
            its cut fraction).
        decay: discriminative (layer-wise) decay: a trained group at depth `d` below the
            head gets `lr * decay**d`. 1 turns it off; ULMFiT's factor 2.6 is `1 / 2.6`,
            ELECTRA's layer-wise decay 0.8 is `0.8`.
        multipliers: `{group: factor}` applied on top of `decay`; 0 holds a group still.
        train_bn: train BatchNorm layers of trained groups (default: keep them frozen).
        early_stopping: stop the stage after this many validations without a better
            `train.monitor`; 0 turns it off.
        epochs: the stage's length in epochs, for display (`steps / steps_per_epoch`).
        why: how the length was set (shown by `tfft plan`).
        purpose: what the stage trains and why (shown by `tfft plan`).
        lora: a `tfft.lora.LoRA`: the backbone groups it names (default: every one the
            stage trains) train through low-rank adapters, their pretrained weights held;
            None: every trained group trains its full weights.
        objective: `"classes"`: cross-entropy through the head; `"pairs"`: the backbone's
            pooled features learn which training examples share a class (`tfft.pairs`),
            the head left out. A pairs stage's rate is a number, not `"find"`.

    Example:
        >>> Stage("finetune", steps=300, train=("head", "top:2"), lr=1e-4,
        ...       shape="warmup_cosine", warmup=0.1)
    """

    name: str
    steps: int
    train: tuple
    lr: Union[float, str]
    shape: str = "constant"
    warmup: float = 0.0
    decay: float = 1.0
    multipliers: tuple = ()
    train_bn: bool = False
    early_stopping: int = 0
    epochs: Optional[float] = None
    why: str = ""
    purpose: str = ""
    lora: Optional[LoRA] = None
    objective: str = "classes"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise RecipeError(f"Stage '{self.name}': unknown objective. Expected one of {list(OBJECTIVES)}. "
                              f"Received: objective={self.objective!r}")
        if self.objective == "pairs" and self.lr == FIND:
            raise RecipeError(f"Stage '{self.name}': the learning-rate finder reads the classifier's loss, which a "
                              f"pairs stage does not train; give its rate. Received: lr={self.lr!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise RecipeError(f"Stage '{self.name}' needs at least one step. Received: steps={self.steps!r}")
        if self.lr != FIND and not (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and self.lr > 0):
            raise RecipeError(
                f"Stage '{self.name}' needs a positive learning rate or 'find'. Received: lr={self.lr!r}")
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

    def adapted_groups(self, names):
        """The set of backbone group names that train through LoRA adapters (`tfft.lora`)."""
        return adapted_groups(self, list(names))

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

    Lengths are in epochs or in optimizer steps (`steps` wins over `epochs` where both are
    given). Lengths you give are kept exactly, fractions of an epoch included; lengths you
    leave out come from the default budget: `DEFAULT_EPOCHS` epochs, raised to `min_steps`
    steps on small data and capped at `max_steps` on large data.

    Args:
        kind: `"two_phase"`, `"gradual_unfreezing"`, `"chain_thaw"`, `"custom"`, or `"auto"`:
            candidate schedules scored on a fold of the training data (`tfft.tuning`).
        lr: learning rate of the head-only stage, or `"find"` (the learning-rate finder).
        finetune_lr: peak learning rate of stages that train backbone groups; `"find"` (the
            default): the learning-rate finder picks it when the stage starts, on the
            training data, with the head already trained.
        epochs: total length of the schedule in epochs (may be fractional); None: the
            default budget.
        steps: total length in optimizer steps; overrides `epochs`.
        head_epochs: length of the head-only stage; None: its share of the total (a third
            for `two_phase`, a quarter for the others).
        head_steps: the same in steps; overrides `head_epochs`.
        stage_epochs: `gradual_unfreezing`, `chain_thaw`: length of each unfreezing step
            (may be fractional: `0.25`); None: the rest of the total split evenly.
        stage_steps: the same in steps; overrides `stage_epochs`.
        min_steps: the default budget's minimum, in steps over all stages.
        max_steps: the default budget's maximum, in steps over all stages.
        unfreeze: `two_phase`: how many top groups train in the second phase (0: all).
        shape: learning-rate shape of backbone stages.
        head_shape: learning-rate shape of the head-only stage.
        warmup: warmup fraction of backbone stages. A short warmup matters: Adam's bias
            correction uses the global step, so a group unfrozen late would otherwise take
            a large first step.
        decay: discriminative decay of backbone stages (see `Stage`).
        train_bn: train BatchNorm in unfrozen groups: True, False, or `"auto"`: only when
            the backbone has no pretrained weights (random statistics are not worth keeping).
        precise_bn: while BatchNorm trains, recompute its moving statistics over this many
            training batches before every validation and at the stage's end (0: off).
        early_stopping: patience in validations for every stage; 0 turns it off.
        stages: `custom`: a list of dicts with the fields of `Stage` (`epochs` or `steps`).
        lora: None, or `dict(rank=8, alpha=16, groups=[...])`: every backbone stage trains
            the groups named (default: each stage's trained backbone groups) through
            low-rank adapters (`tfft.lora`); a custom stage's own `lora` key overrides it.
        pairs: `two_phase` as SetFit's two steps: a pairs stage (`tfft.pairs`), every
            backbone group learning from pairs of training examples which share a class,
            then the head. True, False, or `"auto"`: the Trainer turns it on for
            `two_phase` with few examples per class where it was measured to help
            (`Modality.pairs_up_to`).
        pair_lr: the pairs stage's rate (SetFit's 2e-5), held constant.
        pair_share: the pairs stage's share of the total when the head's length is not
            given; the head stage takes the rest.

    Example:
        >>> ScheduleConfig(kind="gradual_unfreezing", epochs=3, decay=1 / 2.6)
    """

    kind: str = "two_phase"
    lr: Union[float, str] = 1e-3
    finetune_lr: Union[float, str] = "find"
    epochs: Optional[float] = None
    steps: Optional[int] = None
    head_epochs: Optional[float] = None
    head_steps: Optional[int] = None
    stage_epochs: Optional[float] = None
    stage_steps: Optional[int] = None
    min_steps: int = 400
    max_steps: int = 20000
    unfreeze: int = 2
    shape: str = "warmup_cosine"
    head_shape: str = "constant"
    warmup: float = 0.1
    decay: float = 1.0
    train_bn: Union[bool, str] = "auto"
    precise_bn: int = 20
    early_stopping: int = 0
    stages: list = dataclasses.field(default_factory=list)
    lora: Optional[dict] = None
    pairs: Union[bool, str] = "auto"
    pair_lr: float = 2e-5
    pair_share: float = PAIR_SHARE


class _Budget:
    """Turns the schedule's lengths into steps and says how each was set."""

    def __init__(self, config, steps_per_epoch):
        self.config = config
        self.per_epoch = int(steps_per_epoch)
        for key in ("epochs", "head_epochs", "stage_epochs"):
            value = getattr(config, key)
            if value is not None and not value > 0:
                raise RecipeError(f"schedule.{key} must be positive. Received: schedule.{key}={value!r}")
        for key in ("steps", "head_steps", "stage_steps", "min_steps", "max_steps"):
            value = getattr(config, key)
            if value is not None and value < 1:
                raise RecipeError(f"schedule.{key} must be at least 1. Received: schedule.{key}={value!r}")
        if config.min_steps > config.max_steps:
            raise RecipeError(
                f"schedule.min_steps={config.min_steps} exceeds schedule.max_steps={config.max_steps}.")

    def epochs_to_steps(self, epochs):
        return max(1, int(round(epochs * self.per_epoch)))

    def given(self, steps_key, epochs_key):
        """`(steps, why)` of a length the recipe gives, or None."""
        steps, epochs = getattr(self.config, steps_key), getattr(self.config, epochs_key)
        if steps is not None:
            return int(steps), f"schedule.{steps_key}={steps}"
        if epochs is not None:
            return self.epochs_to_steps(epochs), f"schedule.{epochs_key}={epochs:g} x {self.per_epoch} steps per epoch"
        return None

    def total(self):
        """`(steps, why)` of the whole schedule."""
        given = self.given("steps", "epochs")
        if given:
            return given
        nominal = DEFAULT_EPOCHS * self.per_epoch
        steps = min(max(nominal, self.config.min_steps), self.config.max_steps)
        why = f"default budget: {DEFAULT_EPOCHS} epochs = {nominal} steps"
        if steps > nominal:
            why += f", raised to schedule.min_steps={self.config.min_steps} (few examples)"
        elif steps < nominal:
            why += f", capped at schedule.max_steps={self.config.max_steps} (many examples)"
        return steps, why


def build_stages(config, names, steps_per_epoch):
    """Turn a `ScheduleConfig` into the list of `Stage`s for backbone groups `names`.

    Args:
        config: a `ScheduleConfig`.
        names: backbone group names, bottom to top (the head is implied).
        steps_per_epoch: optimizer steps in one pass over the training data.

    Returns:
        A list of `Stage` with their lengths in steps, every `train` spec checked against
        `names`.

    Example:
        >>> [s.name for s in build_stages(ScheduleConfig(kind="chain_thaw"), ["a", "b"], 10)]
        ['head', 'thaw_a', 'thaw_b', 'all']
    """
    names = list(names)
    if config.kind not in KINDS:
        raise RecipeError(f"Unknown schedule kind. Expected one of {list(KINDS)}. Received: schedule.kind={config.kind!r}")
    if config.kind == "auto":
        raise RecipeError("schedule.kind='auto' is resolved by the Trainer (tfft.tuning.run_auto) before stages are "
                          "built; build_stages takes the schedule it chose.")
    if not (isinstance(config.pairs, bool) or config.pairs == "auto"):
        raise RecipeError(f"schedule.pairs must be True, False or 'auto'. Received: schedule.pairs={config.pairs!r}")
    if not (isinstance(config.pair_share, (int, float)) and 0 < config.pair_share < 1):
        raise RecipeError(f"schedule.pair_share is a fraction of the total in (0, 1). "
                          f"Received: schedule.pair_share={config.pair_share!r}")
    if not (isinstance(config.pair_lr, (int, float)) and not isinstance(config.pair_lr, bool) and config.pair_lr > 0):
        raise RecipeError(f"schedule.pair_lr must be a positive rate (the finder reads the classifier's loss, which "
                          f"a pairs stage does not train). Received: schedule.pair_lr={config.pair_lr!r}")
    if not (isinstance(config.train_bn, bool) or config.train_bn == "auto"):
        raise RecipeError(f"schedule.train_bn must be True, False or 'auto'. Received: schedule.train_bn={config.train_bn!r}")
    for key in ("lr", "finetune_lr"):
        value = getattr(config, key)
        if isinstance(value, str) and value != FIND:
            raise RecipeError(f"schedule.{key} must be a rate or 'find'. Received: schedule.{key}={value!r}")
    budget = _Budget(config, steps_per_epoch)
    # "auto" assumes pretrained statistics here; the Trainer resolves it from the backbone.
    common = dict(train_bn=config.train_bn is True, early_stopping=config.early_stopping)
    backbone = dict(common, shape=config.shape, warmup=config.warmup, decay=config.decay,
                    lora=lora_from_recipe(config.lora))
    if config.pairs is True and config.kind in ("gradual_unfreezing", "chain_thaw"):
        raise RecipeError(f"schedule.pairs=True makes two_phase's backbone phase a pairs stage; "
                          f"schedule.kind={config.kind!r} unfreezes groups for cross-entropy instead. Use "
                          f"schedule.kind='two_phase' or schedule.pairs=False. Received: schedule.kind={config.kind!r}, "
                          "schedule.pairs=True")
    if config.kind == "custom":
        if config.pairs is True:
            raise RecipeError("schedule.pairs=True makes two_phase a pairs stage and a head stage; a custom "
                              "schedule writes its own: a stage with objective='pairs'. Received: "
                              "schedule.kind='custom', schedule.pairs=True")
        if not config.stages:
            raise RecipeError("schedule.kind='custom' needs schedule.stages: a list of dicts with name, epochs or steps, train, lr, ...")
        stages = [_stage_from_dict(i, d, backbone, budget) for i, d in enumerate(config.stages)]
    else:
        stages = _builtin(config, names, budget, common, backbone)
    for stage in stages:
        stage.factors(names)  # checks group names and multipliers now, not mid-run
    adapter_plan(stages, names)
    return [dataclasses.replace(s, epochs=s.steps / budget.per_epoch) for s in stages]


def _pairs_then_head(config, budget, common, backbone):
    """`two_phase` with `pairs`: SetFit's two steps, the backbone on pairs of training
    examples, then the head on the features they shaped. No cross-entropy stage trains the
    backbone after them: the head fits the few examples already, and fine-tuning on them
    lowered test accuracy on every measured run (docs/benchmarks.md)."""
    total, total_why = budget.total()
    head = budget.given("head_steps", "head_epochs")
    if head is None:
        steps = int(round(total * config.pair_share))
        pairs_why = f"schedule.pair_share={config.pair_share:g} of the total ({total_why})"
        head = (total - steps, f"the rest of the total ({total_why})")
    else:
        steps, pairs_why = total - head[0], f"the rest of the total ({total_why})"
    if steps < 1 or head[0] < 1:
        raise RecipeError(f"The schedule's {total} steps leave no step for the {'pairs' if steps < 1 else 'head'} "
                          "stage: raise schedule.epochs or schedule.steps, or change schedule.pair_share or the "
                          "head stage's length.")
    # SetFit's rate held, not decayed: a rate falling to zero trained the encoder less in the
    # same steps, and scored lower (docs/benchmarks.md).
    return [
        Stage("pairs", steps, ("backbone",), config.pair_lr, objective="pairs", why=pairs_why,
              purpose="every backbone group on pairs of training examples, their pooled features pulled together "
                      "when they share a class and apart when not (SetFit), so that the classes separate before "
                      "the head exists", **dict(backbone, shape="constant", warmup=0.0)),
        Stage("head", head[0], (HEAD,), config.lr, shape=config.head_shape, why=head[1],
              purpose="the new head on the features the pairs stage shaped (SetFit's second step); no stage "
                      "fine-tunes the backbone on cross-entropy after it: the head fits the few examples already",
              **common),
    ]


def _builtin(config, names, budget, common, backbone):
    kind = config.kind
    if config.pairs is True:
        return _pairs_then_head(config, budget, common, backbone)
    total, total_why = budget.total()
    head = budget.given("head_steps", "head_epochs")
    if head is None:
        head = (max(1, int(round(total * HEAD_SHARE[kind]))), f"{HEAD_SHARE[kind]:.2g} of the total ({total_why})")
    rest = total - head[0]
    explicit_total = budget.given("steps", "epochs") is not None
    head_stage = Stage("head", head[0], (HEAD,), config.lr, shape=config.head_shape, why=head[1],
                       purpose="the new head alone, so that its first, large gradients do not reach pretrained weights",
                       **common)
    if kind == "two_phase":
        top = f"top:{config.unfreeze}" if config.unfreeze else "backbone"
        what = f"the top {config.unfreeze} groups" if config.unfreeze else "every group"
        _check_rest(config, rest, total, "the head stage")
        return [head_stage, Stage(
            "finetune", rest, (HEAD, top), config.finetune_lr, why=f"the rest of the total ({total_why})",
            purpose=f"the head and {what} at finetune_lr, adapting the features to this data", **backbone)]
    count = len(names) if kind == "gradual_unfreezing" else len(names) + 1
    step = budget.given("stage_steps", "stage_epochs")
    if step is not None and not explicit_total:
        # Each unfreezing step has its length; the total follows from them.
        lengths, whys = [step[0]] * count, [step[1]] * count
    else:
        if step is not None:
            lengths = [step[0]] * (count - 1)
            last = rest - sum(lengths)
            _check_rest(config, last, total, f"the head stage and {count - 1} stages of {step[0]} steps")
            lengths.append(last)
            whys = [step[1]] * (count - 1) + [f"the rest of the total ({total_why})"]
        else:
            _check_rest(config, rest - count + 1, total, "the head stage", minimum=count)
            lengths = [rest // count + (1 if i < rest % count else 0) for i in range(count)]
            whys = [f"1/{count} of what the head stage leaves ({total_why})"] * count
    if kind == "gradual_unfreezing":
        stages = [head_stage]
        for i in range(1, len(names) + 1):
            stages.append(Stage(
                f"unfreeze_{names[-i]}", lengths[i - 1], (HEAD, f"top:{i}"), config.finetune_lr, why=whys[i - 1],
                purpose=f"one more group from the top ({names[-i]}), so lower, more general layers change last "
                        "(ULMFiT)", **backbone))
        return stages
    stages = [head_stage]
    for i, name in enumerate(names):
        stages.append(Stage(
            f"thaw_{name}", lengths[i], (HEAD, name), config.finetune_lr, why=whys[i],
            purpose=f"{name} alone beside the head, bottom up, so each group adapts without the others moving "
                    "(chain-thaw, DeepMoji); the head trains too, to follow its changing input", **backbone))
    stages.append(Stage("all", lengths[-1], ("all",), config.finetune_lr, why=whys[-1],
                        purpose="every group and the head together, to settle what the single-group stages changed",
                        **backbone))
    return stages


def _check_rest(config, remaining, total, what, minimum=1):
    if remaining < 1:
        raise RecipeError(
            f"The schedule's {total} steps leave no step after {what} (it needs at least {minimum}): raise "
            "schedule.epochs or schedule.steps, or shorten the earlier stages."
        )


def _stage_from_dict(index, values, defaults, budget):
    fields = {f.name for f in dataclasses.fields(Stage)} - {"why", "purpose"}
    if not isinstance(values, dict):
        raise RecipeError(f"schedule.stages[{index}] must be a dict. Received: {values!r}")
    unknown = set(values) - fields
    if unknown:
        raise RecipeError(f"schedule.stages[{index}] has unknown keys {sorted(unknown)}. Known keys: {sorted(fields)}")
    missing = {"train", "lr"} - set(values)
    if missing or not {"epochs", "steps"} & set(values):
        raise RecipeError(f"schedule.stages[{index}] misses {sorted(missing | ({'epochs or steps'} if not {'epochs', 'steps'} & set(values) else set()))}")
    if "lora" in values:
        values = dict(values, lora=lora_from_recipe(values["lora"], f"schedule.stages[{index}].lora"))
    values = dict(defaults, **values)
    values.setdefault("name", f"stage{index}")
    epochs = values.pop("epochs", None)
    if values.get("steps") is not None:
        values["why"] = f"schedule.stages[{index}].steps={values['steps']}"
    else:
        if not (isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and epochs > 0):
            raise RecipeError(f"schedule.stages[{index}].epochs must be positive. Received: epochs={epochs!r}")
        values["steps"] = budget.epochs_to_steps(epochs)
        values["why"] = f"schedule.stages[{index}].epochs={epochs:g} x {budget.per_epoch} steps per epoch"
    train = values["train"]
    values["train"] = (train,) if isinstance(train, str) else tuple(train)
    values["multipliers"] = tuple(sorted(dict(values.get("multipliers") or {}).items()))
    return Stage(**values)


def plan_steps(stages, start=0):
    """`(first_step, end_step)` of every stage on one continuous step axis."""
    bounds = []
    for stage in stages:
        bounds.append((start, start + stage.steps))
        start += stage.steps
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
