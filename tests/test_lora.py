"""The `lora` recipe value: checked early, with errors that name the key and echo the value,
and resolved to the groups each stage trains through adapters."""

import pytest

from tfft.errors import RecipeError
from tfft.lora import LoRA, adapter_plan, lora_from_recipe
from tfft.recipe import Recipe
from tfft.schedules import ScheduleConfig, build_stages

NAMES = ["stem", "conv2", "conv3", "conv4", "conv5"]


@pytest.mark.parametrize("value, message", [
    (dict(rank=0), "schedule.lora.rank must be a whole number, at least 1. Received: schedule.lora={'rank': 0}"),
    (dict(rank=2.5), "schedule.lora.rank must be a whole number, at least 1. Received: schedule.lora={'rank': 2.5}"),
    (dict(rank=True), "schedule.lora.rank must be a whole number, at least 1. Received: schedule.lora={'rank': True}"),
    (dict(alpha=0), "schedule.lora.alpha must be a positive number (None: the rank). Received: schedule.lora={'alpha': 0}"),
    (dict(ranks=4), "schedule.lora has unknown keys ['ranks']. Known keys: ['rank', 'alpha', 'groups']. "
                    "Received: schedule.lora={'ranks': 4}"),
    (dict(groups=[]), "schedule.lora.groups must be a group name or token, or a non-empty list of them (None: every "
                      "backbone group the stage trains). Received: schedule.lora={'groups': []}"),
    (8, "schedule.lora takes None or a dict such as dict(rank=8, alpha=16, groups=['top:2']). Received: schedule.lora=8"),
])
def test_bad_values_name_the_key_and_echo_the_value(value, message):
    with pytest.raises(RecipeError) as error:
        lora_from_recipe(value)
    assert str(error.value) == message


def test_defaults_and_scale():
    lora = lora_from_recipe({})
    assert (lora.rank, lora.alpha, lora.groups, lora.scale) == (8, None, None, 1.0)
    assert lora_from_recipe(dict(rank=8, alpha=16, groups="top:2")).scale == 2.0
    assert lora_from_recipe(None) is None


def _stages(**schedule):
    return build_stages(ScheduleConfig(**schedule), NAMES, steps_per_epoch=10)


def test_schedule_lora_adapts_what_each_backbone_stage_trains():
    stages = _stages(kind="gradual_unfreezing", steps=50, lora=dict(rank=4))
    assert stages[0].lora is None and stages[0].adapted_groups(NAMES) == set()
    assert [sorted(s.adapted_groups(NAMES)) for s in stages[1:3]] == [["conv5"], ["conv4", "conv5"]]
    # Named groups: in each stage that trains them; the others train their full weights.
    stages = _stages(kind="gradual_unfreezing", steps=50, lora=dict(groups=["conv4"]))
    assert [s.adapted_groups(NAMES) for s in stages] == [set(), set(), {"conv4"}, {"conv4"}, {"conv4"}, {"conv4"}]
    assert list(adapter_plan(stages, NAMES)) == ["conv4"]


def test_a_custom_stage_takes_its_own_lora_or_the_schedules():
    stages = _stages(kind="custom", lora=dict(rank=2), stages=[
        dict(name="head", steps=5, train="head", lr=1e-3),
        dict(name="own", steps=5, train=["head", "top:2"], lr=1e-4, lora=dict(rank=2, groups=["conv5"])),
        dict(name="inherits", steps=5, train=["head", "conv3"], lr=1e-4),
        dict(name="full", steps=5, train="all", lr=1e-5, lora=None),
    ])
    assert [s.adapted_groups(NAMES) for s in stages] == [set(), {"conv5"}, {"conv3"}, set()]
    assert stages[1].lora.key == "schedule.stages[1].lora" and stages[2].lora.key == "schedule.lora"


def test_errors_of_groups_before_any_training():
    cases = [
        (dict(kind="two_phase", steps=30, lora=dict(groups=["conv9"])),
         "schedule.lora.groups: Unknown layer group 'conv9'. Known groups: ['stem', 'conv2', 'conv3', 'conv4', "
         "'conv5', 'head'], or 'all', 'backbone', 'top:N'. Received: schedule.lora={'groups': ['conv9']}"),
        (dict(kind="two_phase", steps=30, lora=dict(groups=["head"])),
         "schedule.lora.groups names the head: the head is new and trains its full weights; name backbone groups "
         "only. Received: schedule.lora={'groups': ['head']}"),
        (dict(kind="two_phase", steps=30, unfreeze=1, lora=dict(groups=["conv4", "stem"])),
         "schedule.lora.groups names ['stem', 'conv4'], which no stage trains: LoRA adapts groups a stage trains "
         "(schedule.unfreeze, or the stages' train). Received: schedule.lora={'groups': ['conv4', 'stem']}"),
        (dict(kind="custom", stages=[dict(steps=5, train=["head", "conv5"], lr=1e-3, lora=dict(groups="top:2"))]),
         "schedule.stages[0].lora.groups names ['conv4'], which stage 'stage0' does not train (it trains ['conv5']): "
         "LoRA adapts groups the stage trains. Received: schedule.stages[0].lora={'groups': 'top:2'}"),
        (dict(kind="custom", stages=[dict(name="a", steps=5, train="all", lr=1e-3, lora=dict(rank=4)),
                                     dict(name="b", steps=5, train="all", lr=1e-3, lora=dict(rank=8))]),
         "Group 'stem' has one set of adapters for the whole run, but schedule.stages[0].lora gives it rank 4 and "
         "alpha 4 and schedule.stages[1].lora rank 8 and alpha 8: give every stage that adapts it the same. "
         "Received: schedule.stages[0].lora={'rank': 4}, schedule.stages[1].lora={'rank': 8}"),
    ]
    for schedule, message in cases:
        with pytest.raises(RecipeError) as error:
            _stages(**schedule)
        assert str(error.value) == message


def test_set_turns_lora_on_key_by_key():
    recipe = Recipe().with_overrides(["schedule.lora.rank=4", "schedule.lora.groups=['top:1']"])
    assert recipe.schedule.lora == {"rank": 4, "groups": ["top:1"]}
    assert Recipe().schedule.lora is None
    assert isinstance(lora_from_recipe(recipe.schedule.lora), LoRA)
