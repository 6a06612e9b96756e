"""LoRA as a stage option: the `lora` recipe value, and which groups a stage trains through it.

A stage may train some of its backbone groups through low-rank adapters (Hu et al., 2021)
instead of their full weights: each adapted layer's kernel `W` is used as
`W + alpha / rank * A @ B`, where only the small `A` and `B` train and `W` stays exactly as
pretrained. The recipe says it with one dict, in a custom stage or for every backbone stage
of a built-in schedule:

```python
schedule = dict(kind="two_phase", lora=dict(rank=8, alpha=16))            # every backbone stage
schedule = dict(kind="custom", stages=[
    dict(name="head", epochs=2, train="head", lr=1e-3),
    dict(name="lora", epochs=4, train=["head", "top:2"], lr="find", lora=dict(rank=8, groups=["top:2"])),
])
```

This module holds that value (`LoRA`) and resolves it against the layer groups; putting
the adapters on the layers, the trainable flags they need and merging them back into the
weights are `tfft.adapters`.
"""

import dataclasses
from typing import Optional

from tfft.errors import GroupError, RecipeError
from tfft.freezing import HEAD, resolve_group_names

SCHEDULE_KEY = "schedule.lora"
KEYS = ("rank", "alpha", "groups")
DEFAULT_RANK = 8


@dataclasses.dataclass(frozen=True)
class LoRA:
    """Low-rank adapters for some of a stage's groups.

    Args:
        rank: the rank of each adapter (`A` is `fan_in x rank`, `B` is `rank x fan_out`).
        alpha: the adapters' output is scaled by `alpha / rank`; None: `alpha = rank`
            (scale 1, Keras's and keras-hub's default).
        groups: group names or tokens (`"top:2"`, `"backbone"`, see
            `tfft.freezing.resolve_group_names`) that train through adapters; None: every
            backbone group the stage trains.
        key: where the recipe set it (`"schedule.lora"`, `"schedule.stages[1].lora"`), for
            errors. A stage's own `lora` must name groups that stage trains; the groups of
            `schedule.lora` train through adapters in each stage that trains them.
        received: the value as the recipe wrote it, echoed by errors.

    Example:
        >>> LoRA(rank=8, alpha=16, groups=("top:2",)).scale
        2.0
    """

    rank: int = DEFAULT_RANK
    alpha: Optional[float] = None
    groups: Optional[tuple] = None
    key: str = SCHEDULE_KEY
    received: str = ""

    @property
    def scale(self):
        """`alpha / rank`: what the adapters' output is multiplied by."""
        return (self.alpha if self.alpha is not None else self.rank) / self.rank

    @property
    def schedule_wide(self):
        """Whether this is `schedule.lora` (for every backbone stage) rather than a stage's own."""
        return self.key == SCHEDULE_KEY

    def error(self, message):
        """A `RecipeError` that ends with the value as the recipe wrote it."""
        return RecipeError(f"{message} Received: {self.key}={self.received}")


def lora_from_recipe(value, key=SCHEDULE_KEY):
    """Check a recipe's `lora` value and turn it into a `LoRA`, or None when it is None.

    Args:
        value: None, or a dict with the optional keys `rank` (a whole number >= 1,
            default 8), `alpha` (a positive number, default the rank) and `groups` (a group
            name or token, or a list of them; default every backbone group the stage trains).
        key: the recipe key the value comes from, named by every error.

    Example:
        >>> lora = lora_from_recipe(dict(rank=4, groups="top:1"), "schedule.stages[1].lora")
        >>> lora.rank, lora.groups, lora.scale
        (4, ('top:1',), 1.0)
    """
    if value is None:
        return None
    if isinstance(value, LoRA):
        return value
    if not isinstance(value, dict):
        raise RecipeError(f"{key} takes None or a dict such as dict(rank=8, alpha=16, groups=['top:2']). "
                          f"Received: {key}={value!r}")
    received = repr(value)
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise RecipeError(f"{key} has unknown keys {unknown}. Known keys: {list(KEYS)}. Received: {key}={received}")
    rank = value.get("rank", DEFAULT_RANK)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise RecipeError(f"{key}.rank must be a whole number, at least 1. Received: {key}={received}")
    alpha = value.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0):
        raise RecipeError(f"{key}.alpha must be a positive number (None: the rank). Received: {key}={received}")
    groups = value.get("groups")
    if groups is not None:
        groups = (groups,) if isinstance(groups, str) else groups
        if not isinstance(groups, (list, tuple)) or not groups or not all(isinstance(g, str) for g in groups):
            raise RecipeError(f"{key}.groups must be a group name or token, or a non-empty list of them "
                              f"(None: every backbone group the stage trains). Received: {key}={received}")
        groups = tuple(groups)
    return LoRA(rank=rank, alpha=None if alpha is None else float(alpha), groups=groups, key=key, received=received)


def named_groups(lora, names):
    """The backbone groups `lora.groups` resolves to; None when it names none (every group
    the stage trains).

    Args:
        lora: a `LoRA`.
        names: backbone group names, bottom to top.

    Example:
        >>> named_groups(LoRA(groups=("top:2",)), ["a", "b", "c"])
        {'b', 'c'}
    """
    if lora.groups is None:
        return None
    try:
        chosen = resolve_group_names(list(lora.groups), list(names))
    except GroupError as error:
        raise lora.error(f"{lora.key}.groups: {str(error).split(' Received:')[0]}") from None
    if HEAD in chosen:
        raise lora.error(f"{lora.key}.groups names the head: the head is new and trains its full weights; "
                         "name backbone groups only.")
    return chosen


def adapted_groups(stage, names):
    """The backbone groups `stage` trains through adapters (a set; empty without `lora`).

    Args:
        stage: a `tfft.schedules.Stage`.
        names: backbone group names, bottom to top.

    Raises:
        RecipeError: the stage's own `lora` names a group the stage does not train.

    Example:
        >>> adapted_groups(Stage("ft", 10, ("head", "top:2"), 1e-4, lora=LoRA()), ["a", "b", "c"])
        {'b', 'c'}
    """
    lora = stage.lora
    if lora is None:
        return set()
    trained = stage.trained_groups(names) - {HEAD}
    named = named_groups(lora, names)
    if named is None:
        return trained
    if not lora.schedule_wide and named - trained:
        order = [n for n in names if n in named - trained]
        raise lora.error(f"{lora.key}.groups names {order}, which stage '{stage.name}' does not train "
                         f"(it trains {[n for n in names if n in trained]}): LoRA adapts groups the stage trains.")
    return named & trained


def adapter_plan(stages, names):
    """Every group some stage trains through adapters, with its `LoRA`, checked across stages.

    A group has one set of adapters for the whole run, so every stage that adapts it must
    give the same rank and alpha; every group `schedule.lora` names must be trained by some
    stage.

    Args:
        stages: the run's `Stage`s.
        names: backbone group names, bottom to top.

    Returns:
        `{group_name: LoRA}`, in `names` order.

    Example:
        >>> adapter_plan(stages, trainer.group_names)
        {'conv4': LoRA(rank=8, ...), 'conv5': LoRA(rank=8, ...)}
    """
    plan = {}
    for stage in stages:
        adapted = adapted_groups(stage, names)
        for name in (n for n in names if n in adapted):
            lora = stage.lora
            if name in plan and (plan[name].rank, plan[name].scale) != (lora.rank, lora.scale):
                first = plan[name]
                raise RecipeError(
                    f"Group '{name}' has one set of adapters for the whole run, but {first.key} gives it rank "
                    f"{first.rank} and alpha {first.rank * first.scale:g} and {lora.key} rank {lora.rank} and alpha "
                    f"{lora.rank * lora.scale:g}: give every stage that adapts it the same. "
                    f"Received: {first.key}={first.received}, {lora.key}={lora.received}")
            plan.setdefault(name, lora)
    for lora in {s.lora for s in stages if s.lora is not None and s.lora.schedule_wide}:
        named = named_groups(lora, names) or set()
        idle = [n for n in names if n in named and n not in plan]
        if idle:
            raise lora.error(f"{lora.key}.groups names {idle}, which no stage trains: LoRA adapts groups a stage "
                             "trains (schedule.unfreeze, or the stages' train).")
    return {name: plan[name] for name in names if name in plan}


def explicitly_named(lora, names):
    """The groups `lora.groups` names by their own name (not through a token such as
    `"top:2"`): each must hold a layer LoRA can adapt.

    Args:
        lora: a `LoRA`.
        names: backbone group names.

    Example:
        >>> explicitly_named(LoRA(groups=("top:1", "a")), ["a", "b"])
        {'a'}
    """
    return {g for g in (lora.groups or ()) if g in names}
