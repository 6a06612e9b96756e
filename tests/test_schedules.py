import numpy as np
import pytest

from tfft.errors import GroupError, RecipeError
from tfft.schedules import ScheduleConfig, Stage, StageLearningRate, build_stages, plan_steps, stage_rate

NAMES = ["stem", "conv2", "conv3", "conv4"]


def test_two_phase_is_head_then_top_groups_at_a_low_rate():
    config = ScheduleConfig(kind="two_phase", head_epochs=2, epochs=5, unfreeze=2, lr=1e-3, finetune_lr=1e-4)
    stages = build_stages(config, NAMES, steps_per_epoch=10)
    assert [s.name for s in stages] == ["head", "finetune"]
    assert stages[0].trained_groups(NAMES) == {"head"}
    assert stages[1].trained_groups(NAMES) == {"head", "conv3", "conv4"}
    assert [s.steps for s in stages] == [20, 30] and [s.epochs for s in stages] == [2, 3]
    assert stages[1].lr == 1e-4 and stages[1].shape == "warmup_cosine"
    assert plan_steps(stages) == [(0, 20), (20, 50)]
    assert "the top 2 groups" in stages[1].purpose


def test_gradual_unfreezing_adds_one_group_from_the_top_per_step():
    stages = build_stages(ScheduleConfig(kind="gradual_unfreezing", head_epochs=1, stage_epochs=1, epochs=7), NAMES, 10)
    trained = [sorted(s.trained_groups(NAMES)) for s in stages]
    assert trained[1] == ["conv4", "head"]
    assert trained[2] == ["conv3", "conv4", "head"]
    assert trained[-1] == sorted(NAMES + ["head"])
    assert [s.steps for s in stages] == [10, 10, 10, 10, 30]
    with pytest.raises(RecipeError, match="leave no step after the head stage and 3 stages"):
        build_stages(ScheduleConfig(kind="gradual_unfreezing", head_epochs=1, stage_epochs=1, epochs=3), NAMES, 10)


def test_chain_thaw_trains_each_group_beside_the_head_from_the_bottom_then_all():
    stages = build_stages(ScheduleConfig(kind="chain_thaw"), NAMES, 10)
    assert [s.name for s in stages] == ["head", "thaw_stem", "thaw_conv2", "thaw_conv3", "thaw_conv4", "all"]
    assert stages[1].trained_groups(NAMES) == {"stem", "head"}
    assert stages[-1].trained_groups(NAMES) == set(NAMES) | {"head"}
    assert "chain-thaw" in stages[1].purpose


@pytest.mark.parametrize("kind", ["two_phase", "gradual_unfreezing", "chain_thaw"])
def test_every_builtin_schedule_honours_the_total_it_is_given(kind):
    for epochs, per_epoch in [(3, 7), (12, 1), (0.5, 100)]:
        stages = build_stages(ScheduleConfig(kind=kind, epochs=epochs), NAMES, per_epoch)
        assert sum(s.steps for s in stages) == round(epochs * per_epoch), (kind, epochs)
    assert sum(s.steps for s in build_stages(ScheduleConfig(kind=kind, steps=345), NAMES, 9)) == 345


def test_default_budget_has_a_floor_for_small_data_and_a_cap_for_large():
    small = build_stages(ScheduleConfig(), NAMES, steps_per_epoch=4)      # 50 examples, batch 16
    assert sum(s.steps for s in small) == 400 and "raised to schedule.min_steps=400" in small[0].why
    medium = build_stages(ScheduleConfig(), NAMES, steps_per_epoch=1563)  # 50,000 examples, batch 32
    assert sum(s.steps for s in medium) == 6 * 1563 and "default budget: 6 epochs" in medium[1].why
    huge = build_stages(ScheduleConfig(max_steps=5000), NAMES, steps_per_epoch=40000)
    assert sum(s.steps for s in huge) == 5000 and "capped at schedule.max_steps=5000" in huge[0].why
    assert [s.steps for s in small] == [133, 267]


def test_stages_shorter_than_an_epoch():
    twelve = [f"layer{i}" for i in range(12)]
    stages = build_stages(ScheduleConfig(kind="gradual_unfreezing", head_epochs=0.5, stage_epochs=0.25), twelve, 40)
    assert [s.steps for s in stages] == [20] + [10] * 12
    assert stages[1].epochs == 0.25
    fitted = build_stages(ScheduleConfig(kind="gradual_unfreezing", epochs=3), twelve, 40)
    assert sum(s.steps for s in fitted) == 120 and len(fitted) == 13
    custom = build_stages(ScheduleConfig(kind="custom", stages=[dict(steps=7, train="head", lr=1e-3),
                                                                dict(epochs=0.25, train="all", lr=1e-4)]), NAMES, 40)
    assert [s.steps for s in custom] == [7, 10] and custom[1].why == "schedule.stages[1].epochs=0.25 x 40 steps per epoch"


def test_custom_stages_and_their_errors():
    config = ScheduleConfig(kind="custom", stages=[
        dict(name="warm", epochs=1, train="head", lr=1e-3),
        dict(epochs=2, train=["head", "conv4"], lr=1e-4, multipliers={"conv4": 0.5}, shape="one_cycle"),
    ])
    stages = build_stages(config, NAMES, 10)
    assert [s.name for s in stages] == ["warm", "stage1"]
    assert stages[1].factors(NAMES)["conv4"] == 0.5
    with pytest.raises(RecipeError, match=r"unknown keys \['epoch'\]"):
        build_stages(ScheduleConfig(kind="custom", stages=[dict(epoch=1, train="head", lr=1e-3)]), NAMES, 10)
    with pytest.raises(GroupError, match="Unknown layer group 'conv9'"):
        build_stages(ScheduleConfig(kind="custom", stages=[dict(epochs=1, train=["conv9"], lr=1e-3)]), NAMES, 10)
    with pytest.raises(RecipeError, match="multipliers name unknown layer groups"):
        build_stages(ScheduleConfig(kind="custom", stages=[dict(epochs=1, train="all", lr=1e-3, multipliers={"x": 1})]), NAMES, 10)
    with pytest.raises(RecipeError, match="Unknown schedule kind"):
        build_stages(ScheduleConfig(kind="cosine"), NAMES, 10)


def test_discriminative_decay_counts_depth_over_trained_groups():
    stage = Stage("s", 1, ("all",), 1e-3, decay=0.5, multipliers=(("conv2", 0.0),))
    factors = stage.factors(NAMES)
    assert factors == {"head": 1.0, "conv4": 0.5, "conv3": 0.25, "conv2": 0.0, "stem": 0.0625}
    frozen_gap = Stage("s", 1, ("head", "conv2"), 1e-3, decay=0.5).factors(NAMES)
    assert frozen_gap["conv2"] == 0.5 and frozen_gap["conv4"] == 0.0
    with pytest.raises(RecipeError, match="decay=0.385"):
        Stage("s", 1, ("all",), 1e-3, decay=2.6)


def test_rate_shapes():
    lr, n = 1.0, 100
    t = np.arange(n, dtype="float32")
    constant = stage_rate(t, lr, n, "constant", 0.0)
    assert np.allclose(constant, 1.0)
    warm = stage_rate(t, lr, n, "warmup_cosine", 0.1)
    assert warm[0] == pytest.approx(0.1) and warm[9] == pytest.approx(1.0) and warm[10] == pytest.approx(1.0)
    assert np.all(np.diff(warm[10:]) <= 1e-7) and warm[-1] < 0.01
    cycle = stage_rate(t, lr, n, "one_cycle", 0.0)
    assert cycle[0] == pytest.approx(1 / 25) and cycle.max() == pytest.approx(1.0, rel=1e-3)
    assert int(np.argmax(cycle)) == 25 and cycle[-1] < 1e-3
    stlr = stage_rate(t, lr, n, "slanted_triangular", 0.1)
    assert stlr[0] == pytest.approx(1 / 32) and int(np.argmax(stlr)) == 10 and stlr[-1] == pytest.approx(1 / 32, rel=0.05)


def test_stage_learning_rate_follows_the_global_step_from_its_start():
    schedule = StageLearningRate(1e-3, start_step=100, steps=50, shape="warmup_cosine", warmup=0.1)
    assert float(schedule(100)) == pytest.approx(2e-4)
    assert float(schedule(104)) == pytest.approx(1e-3)
    expected = stage_rate(np.arange(50, dtype="float32"), 1e-3, 50, "warmup_cosine", 0.1)
    got = np.array([float(schedule(100 + i)) for i in range(50)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)
    assert StageLearningRate.from_config(schedule.get_config()).get_config() == schedule.get_config()
