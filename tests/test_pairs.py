"""The pairs stage (`tfft.pairs`): SetFit's loss on hand-computed batches, where the stage
goes in a schedule, what a real run trains in it (the backbone, never the head) and
reports, when `schedule.pairs="auto"` turns it on, and a run killed inside it that resumes
to the weights of an uninterrupted one."""

import json
import math
import os
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tfft import pairs
from tfft.errors import RecipeError
from tfft.pairs import pair_loss
from tfft.recipe import Recipe
from tfft.schedules import ScheduleConfig, Stage, build_stages
from tfft.testing import BlobTrainer, gaussian_blobs, write_tiny_bert
from tfft.trainer import Trainer

pytestmark = pytest.mark.filterwarnings("ignore")

NAMES = ["stem", "conv2", "conv3", "conv4"]


def _loss(features, labels):
    return float(pair_loss(tf.constant(features, tf.float32), tf.constant(labels)))


# --- pair_loss ---------------------------------------------------------------------------


def test_identical_same_class_and_orthogonal_other_class_features_score_zero():
    assert _loss([[1, 0], [1, 0], [0, 1]], [0, 0, 1]) == 0.0
    # Cosines: the features' lengths do not count.
    assert _loss([[2, 0], [0.5, 0], [0, 7], [0, 3]], [4, 4, 9, 9]) == pytest.approx(0.0, abs=1e-7)


def test_a_non_zero_loss_computed_by_hand():
    # Pairs: (0, 1) same class, cos = 1/sqrt(2), error (1/sqrt(2) - 1)^2;
    # (0, 2) other, cos 0, error 0; (1, 2) other, cos 1/sqrt(2), error 1/2.
    same = (1 / math.sqrt(2) - 1) ** 2
    others = (0.0 + 0.5) / 2
    assert _loss([[1, 0], [1, 1], [0, 1]], [0, 0, 1]) == pytest.approx((same + others) / 2, rel=1e-6)


def test_a_batch_without_a_same_class_pair_scores_its_other_pairs_alone():
    # No example is paired with itself: with every label distinct only the other pairs
    # count, (0.5 + 0 + 0.5) / 3, not halved.
    assert _loss([[1, 0], [1, 1], [0, 1]], [0, 1, 2]) == pytest.approx(1 / 3, rel=1e-6)
    # And a batch of one class scores its same-class pairs alone: orthogonal, error 1 each.
    assert _loss([[1, 0], [0, 1]], [3, 3]) == pytest.approx(1.0)
    assert _loss([[1, 0]], [0]) == 0.0  # no pair at all


@pytest.mark.parametrize("others", [1, 4, 12])
def test_same_class_pairs_and_other_pairs_weigh_half_each_whatever_their_numbers(others):
    # One same-class pair, wrong (orthogonal, error 1), beside `others` more examples of
    # classes of their own, all right (orthogonal to everything, error 0): half the loss,
    # however many other pairs there are. A mean over all pairs would shrink with them.
    features = np.eye(2 + others)
    labels = [0, 0] + list(range(1, others + 1))
    assert _loss(features, labels) == pytest.approx(0.5)
    # The mirror case: every other pair wrong (the same vector), one same-class pair right.
    assert _loss(np.ones((2 + others, 3)), labels) == pytest.approx(0.5)


def test_features_that_say_nothing_score_chance():
    assert _loss(np.eye(6), [0, 0, 1, 1, 2, 2]) == pytest.approx(pairs.CHANCE)


def test_pair_loss_equals_a_pair_by_pair_reference():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 5))
    labels = rng.integers(0, 3, size=10)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    same, other = [], []
    for i in range(10):
        for j in range(i + 1, 10):
            cosine = unit[i] @ unit[j]
            (same if labels[i] == labels[j] else other).append((cosine - (labels[i] == labels[j])) ** 2)
    assert _loss(features, labels) == pytest.approx((np.mean(same) + np.mean(other)) / 2, rel=1e-5)


# --- schedules ---------------------------------------------------------------------------


def test_pairs_true_makes_two_phase_a_pairs_stage_then_the_head_within_the_same_total():
    plain = build_stages(ScheduleConfig(kind="two_phase", steps=200, pairs=False), NAMES, steps_per_epoch=10)
    stages = build_stages(ScheduleConfig(kind="two_phase", steps=200, pairs=True), NAMES, steps_per_epoch=10)
    assert [(s.name, s.objective, s.steps) for s in stages] == [("pairs", "pairs", 100), ("head", "classes", 100)]
    assert sum(s.steps for s in stages) == sum(s.steps for s in plain) == 200
    assert stages[0].trained_groups(NAMES) == set(NAMES)  # every backbone group, not the head
    assert stages[0].lr == 2e-5 and stages[0].shape == "constant"  # SetFit's rate, held; never the finder
    assert stages[1].trained_groups(NAMES) == {"head"} and stages[1].lr == plain[0].lr


@pytest.mark.parametrize("kind", ["gradual_unfreezing", "chain_thaw"])
def test_pairs_true_refuses_the_schedules_that_unfreeze_for_cross_entropy(kind):
    with pytest.raises(RecipeError, match=rf"Received: schedule.kind='{kind}', schedule.pairs=True"):
        build_stages(ScheduleConfig(kind=kind, steps=200, pairs=True), NAMES, steps_per_epoch=10)


def test_pairs_stage_takes_its_share_and_rate_and_the_head_stage_the_rest():
    stages = build_stages(ScheduleConfig(kind="two_phase", steps=100, pairs=True, pair_share=0.3, pair_lr=1e-3),
                          NAMES, steps_per_epoch=10)
    assert [(s.name, s.steps) for s in stages] == [("pairs", 30), ("head", 70)]
    assert stages[0].lr == 1e-3
    assert [s.epochs for s in stages] == [3.0, 7.0]
    # The default budget (a floor of 400 steps on small data) is shared the same way.
    default = build_stages(ScheduleConfig(pairs=True), NAMES, steps_per_epoch=4)
    assert [s.steps for s in default] == [200, 200]
    # A head length given wins; the pairs stage takes the rest.
    given = build_stages(ScheduleConfig(steps=100, head_steps=10, pairs=True), NAMES, steps_per_epoch=10)
    assert [(s.name, s.steps) for s in given] == [("pairs", 90), ("head", 10)]


def test_pairs_auto_builds_no_pairs_stage_for_the_trainer_to_decide():
    auto = build_stages(ScheduleConfig(kind="two_phase", steps=100, pairs="auto"), NAMES, 10)
    assert auto == build_stages(ScheduleConfig(kind="two_phase", steps=100, pairs=False), NAMES, 10)
    assert all(s.objective == "classes" for s in auto)


# `1.0 in (True, False, "auto")` holds, so a membership test would let pairs=1.0 through,
# and it would then build no pairs stage (`is not True`).
@pytest.mark.parametrize("key, value", [("pairs", "yes"), ("pairs", 1.0), ("pairs", 0), ("train_bn", 1),
                                        ("pair_share", 1.5), ("pair_share", 0),
                                        ("pair_lr", "find"), ("pair_lr", -1e-3), ("pair_lr", True)])
def test_bad_pairs_settings_are_refused_naming_the_key(key, value):
    with pytest.raises(RecipeError, match=rf"Received: schedule\.{key}={value!r}"):
        build_stages(ScheduleConfig(kind="two_phase", steps=100, **{key: value}), NAMES, 10)


def test_a_schedule_too_short_for_a_pairs_stage_and_a_head_stage_is_refused():
    with pytest.raises(RecipeError, match=r"The schedule's 1 steps leave no step for the pairs stage"):
        build_stages(ScheduleConfig(kind="two_phase", steps=1, pairs=True), NAMES, 10)
    with pytest.raises(RecipeError, match=r"The schedule's 3 steps leave no step for the head stage"):
        build_stages(ScheduleConfig(kind="two_phase", steps=3, pairs=True, pair_share=0.9), NAMES, 10)


def test_pairs_true_asks_a_custom_schedule_for_a_stage_of_its_own():
    with pytest.raises(RecipeError, match=r"a stage with objective='pairs'. Received: schedule.kind='custom', "
                                          r"schedule.pairs=True"):
        build_stages(ScheduleConfig(kind="custom", pairs=True, stages=[dict(steps=5, train="head", lr=1e-3)]), NAMES, 10)


def test_custom_stages_take_an_objective_and_refuse_an_unknown_one():
    stages = build_stages(ScheduleConfig(kind="custom", stages=[
        dict(name="p", steps=5, train="backbone", lr=1e-4, objective="pairs"),
        dict(name="h", steps=5, train="head", lr=1e-3)]), NAMES, 10)
    assert [s.objective for s in stages] == ["pairs", "classes"]
    with pytest.raises(RecipeError, match=r"Stage 'odd': unknown objective.*Received: objective='bogus'"):
        build_stages(ScheduleConfig(kind="custom", stages=[
            dict(name="odd", steps=5, train="head", lr=1e-3, objective="bogus")]), NAMES, 10)
    with pytest.raises(RecipeError, match=r"Stage 'p': the learning-rate finder .*Received: lr='find'"):
        Stage("p", 5, ("backbone",), "find", objective="pairs")


# --- a real run --------------------------------------------------------------------------

# 128 training points of 4 classes, 8 batches an epoch: the pairs stage runs steps 1-16
# (validated at 8 and 16), the head 17-40; a checkpoint every 3 steps between validations
# (3, 6, 8, 11, 14, 16, ...).
RUN = ["data.batch_size=16", "schedule.pairs=True", "schedule.steps=40", "schedule.pair_lr=0.003",
       "schedule.pair_share=0.4", "train.checkpoint_every=3", "output.log_every=1"]
PAIR_STEPS = 16
HEAD = ("head_logits/kernel", "head_logits/bias")


def _weights(model):
    return {v.path: np.array(v, copy=True) for v in model.weights}


def _moved(before, after):
    return {path for path in before if not np.array_equal(before[path], after[path])}


class Recording(BlobTrainer):
    """`BlobTrainer`, recording around each stage its weights, the pair loss of its
    training points, and the checkpoints' best so far."""

    def on_stage_begin(self, stage, index):
        self.begin = getattr(self, "begin", []) + [_weights(self.model)]
        self.loss_begin = getattr(self, "loss_begin", []) + [self.training_pair_loss()]

    def on_stage_end(self, stage, index, logs):
        self.end = getattr(self, "end", []) + [_weights(self.model)]
        self.loss_end = getattr(self, "loss_end", []) + [self.training_pair_loss()]
        self.best_at_end = getattr(self, "best_at_end", []) + [
            (self.checkpoints.best_info, os.path.exists(self.store.best_directory))]

    def training_pair_loss(self):
        x, y, _, _ = gaussian_blobs(**self.blobs)
        return float(pair_loss(self.backbone.model(x, training=False), y))


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "run"
    trainer = Recording(Recipe().with_overrides(RUN), out_dir=str(out), verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = trainer.run()
    return trainer, metrics, [str(w.message) for w in caught]


def test_the_pairs_stage_moves_the_backbone_and_leaves_the_head_bit_identical(pairs_run):
    trainer, metrics, _ = pairs_run
    assert [s.name for s in trainer.stages] == ["pairs", "head"]
    assert [s["steps_run"] for s in metrics["stages"]] == [16, 24]
    moved = _moved(trainer.begin[0], trainer.end[0])
    assert moved == {"low_dense/kernel", "low_dense/bias", "high_dense/kernel", "high_dense/bias"}
    for path in HEAD:
        np.testing.assert_array_equal(trainer.end[0][path], trainer.begin[0][path], err_msg=path)
    assert set(HEAD) <= _moved(trainer.begin[1], trainer.end[1])  # the head stage does train it


def test_the_pairs_stage_lowers_the_pair_loss_of_the_training_data(pairs_run):
    trainer, metrics, _ = pairs_run
    before, after = trainer.loss_begin[0], trainer.loss_end[0]
    assert after < 0.5 * before, (before, after)
    # The stage's logged `loss` is that pair loss (its running mean over the last epoch).
    assert 0 < metrics["stages"][0]["loss"] < before


def test_the_pairs_stage_reports_its_validation_pair_loss_and_no_accuracy(pairs_run):
    trainer, _, _ = pairs_run
    with open(os.path.join(trainer.out_dir, "metrics.json")) as file:
        saved = json.load(file)
    first = saved["stages"][0]
    assert first["name"] == "pairs" and first["stage_end_accuracy"] is None
    assert 0 <= first["val_pair_loss"] < pairs.CHANCE
    assert "val_accuracy" not in first and "accuracy" not in first and "val_loss" not in first
    assert saved["stages"][1]["stage_end_accuracy"] is not None and "val_pair_loss" not in saved["stages"][1]


def test_the_pairs_stage_writes_no_best_checkpoint_and_no_missing_monitor_warning(pairs_run):
    trainer, metrics, messages = pairs_run
    best, written = trainer.best_at_end[0]
    assert best is None and not written  # two validations in the stage, neither ranked
    assert trainer.best_at_end[1][0]["step"] > PAIR_STEPS
    assert metrics["best"]["step"] > PAIR_STEPS and metrics["best"]["monitor"] == "val_loss"
    missing = [m for m in messages if "not in the epoch logs" in m]
    assert not missing, missing


def test_a_pairs_stage_ranks_no_checkpoint_whatever_the_monitor(tmp_path):
    trainer = Recording(Recipe().with_overrides(RUN + ["train.monitor='loss'"]), out_dir=str(tmp_path / "run"),
                        verbose=0)
    metrics = trainer.run()
    assert trainer.best_at_end[0] == (None, False)
    assert metrics["best"]["step"] > PAIR_STEPS


# --- schedule.pairs="auto" ---------------------------------------------------------------


def test_auto_builds_no_pairs_stage_for_a_modality_never_measured_to_gain():
    # 32 points per class, a pretrained backbone, one class each: only data.kind stops it.
    trainer = BlobTrainer(Recipe().with_overrides(["data.batch_size=16", "schedule.steps=40"]), verbose=0)
    trainer.setup()
    assert trainer.recipe.schedule.pairs == "auto" and trainer.backbone.pretrained
    assert trainer.datasets.num_train / trainer.datasets.num_classes == 32
    assert trainer.pairs_by_default() is None
    assert [s.name for s in trainer.stages] == ["head", "finetune"]


TICKETS = {"refund": "please refund order {} it was broken", "account": "my password reset link {} fails"}


def _tickets(path, per_class):
    rows = ["text,label"] + [f"{text.format(i)},{label}" for label, text in TICKETS.items() for i in range(per_class)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    pytest.importorskip("keras_hub")
    root = tmp_path_factory.mktemp("text")
    words = " ".join(TICKETS.values()).replace("{}", "") + " 0 1 2 3 4 5 6 7 8 9"
    return root, write_tiny_bert(root / "bert", [words], sequence_length=16)


def _text_trainer(tiny_bert, per_class, *overrides, train=None):
    root, bert = tiny_bert
    train = train or _tickets(root / f"train{per_class}.csv", per_class)
    recipe = Recipe().with_overrides([
        "data.kind='text'", f"data.manifest={train!r}", f"data.validation_path={_tickets(root / 'validation.csv', 4)!r}",
        f"backbone.name={bert!r}", "data.sequence_length=16", "data.batch_size=8", "schedule.steps=40", *overrides])
    trainer = Trainer(recipe, out_dir=str(root / "run"), verbose=0, dry_run=True)
    trainer.setup()
    return trainer


def test_auto_starts_few_shot_text_with_a_pairs_stage_up_to_32_examples_per_class(tiny_bert):
    trainer = _text_trainer(tiny_bert, 32)
    # A preset's weights count as pretrained, random as the tiny BERT's are.
    assert trainer.backbone.pretrained and trainer.datasets.num_train == 64
    assert [(s.name, s.objective, s.steps) for s in trainer.stages] == [("pairs", "pairs", 20), ("head", "classes", 20)]
    assert trainer.stages[0].why.startswith(
        "schedule.pairs='auto': 32 training examples per class, at most 32 for data.kind='text'; ")
    assert trainer.stages[0].trained_groups(trainer.group_names) == set(trainer.group_names) - {"head"}


@pytest.mark.parametrize("per_class, overrides, names", [
    (33, (), ["head", "finetune"]),
    (8, ("backbone.weights=None",), ["head", "finetune"]),
    (8, ("schedule.pairs=False",), ["head", "finetune"]),
    (8, ("schedule.kind='gradual_unfreezing'",), ["head", "unfreeze_transformer_layer_1", "unfreeze_transformer_layer_0",
                                                  "unfreeze_embeddings"])])
def test_auto_leaves_text_without_pairs_above_32_per_class_without_pretrained_weights_or_two_phase(
        tiny_bert, per_class, overrides, names):
    trainer = _text_trainer(tiny_bert, per_class, *overrides)
    assert trainer.datasets.num_train == 2 * per_class
    assert [s.name for s in trainer.stages] == names


def test_pairs_true_refuses_multi_label_data_and_auto_leaves_it_alone(tiny_bert):
    root, _ = tiny_bert
    path = root / "multi.csv"
    path.write_text("text,label\n" + "".join(f"please refund order {i},refund|account\nmy password {i},account\n"
                                             for i in range(8)))
    multi = ["data.multi_label=True", "data.label_delimiter='|'"]
    with pytest.raises(RecipeError, match=r"needs one class per example .*schedule\.pairs=False"):
        _text_trainer(tiny_bert, 8, "schedule.pairs=True", *multi, train=str(path))
    auto = _text_trainer(tiny_bert, 8, *multi, train=str(path))
    assert auto.datasets.multi_label and [s.name for s in auto.stages] == ["head", "finetune"]


@pytest.mark.slow  # writes and reads a tagged set for a dry run: 37 s beside other work
def test_pairs_true_refuses_a_token_task(tiny_bert):
    from tfft.modalities.text.contract_entities import make_contract_entities

    root, bert = tiny_bert
    folder = make_contract_entities(str(root / "entities"), per_type=2, test_sentences=4)
    recipe = Recipe().with_overrides([
        "data.kind='text'", "data.task='tokens'", f"data.conll={os.path.join(folder, 'contracts_train.conll')!r}",
        f"data.validation_path={os.path.join(folder, 'contracts_test.conll')!r}", f"backbone.name={bert!r}",
        "data.sequence_length=16", "data.batch_size=8", "schedule.steps=40", "schedule.pairs=True"])
    with pytest.raises(RecipeError, match=r"needs one class per example .*Received: task 'tokens'"):
        Trainer(recipe, out_dir=str(root / "tokens"), verbose=0, dry_run=True).setup()


# --- resume ------------------------------------------------------------------------------


class Killed(Exception):
    pass


class Crashing(BlobTrainer):
    """Dies after global step 13, inside the pairs stage and between the checkpoints of
    steps 11 and 14, as a killed process would: nothing is saved on the way out."""

    def build_callbacks(self, stage, index):
        import keras

        class Kill(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(np.asarray(self.model.optimizer.iterations)) == 13:
                    raise Killed()

        return [Kill()]


def _loss_steps(run):
    from tensorboard.backend.event_processing import event_accumulator as ea

    events = ea.EventAccumulator(os.path.join(run, "tensorboard", "train"), size_guidance={ea.TENSORS: 0})
    events.Reload()
    return [e.step for e in events.Tensors("loss")]


def test_a_run_killed_inside_the_pairs_stage_resumes_to_the_uninterrupted_weights(tmp_path, pairs_run, capsys):
    run = tmp_path / "run"
    with pytest.raises(Killed):
        Crashing(Recipe().with_overrides(RUN), out_dir=str(run), verbose=0).run()
    newest = max(name for name in os.listdir(run / "checkpoints") if name.startswith("step-"))
    assert newest == "step-000011" and not (run / "checkpoints" / "best").exists()
    capsys.readouterr()
    resumed = BlobTrainer(Recipe().with_overrides(RUN), out_dir=str(run), verbose=1)
    metrics = resumed.run()
    printed = capsys.readouterr().out
    assert "from its checkpoint at global step 11 (stage 1 'pairs'" in printed
    assert "stage 1/2 'pairs': resuming at step 12 of 16" in printed
    whole, reference, _ = pairs_run
    assert [s["steps_run"] for s in metrics["stages"]] == [16, 24]
    assert metrics["stages"][0]["val_pair_loss"] == reference["stages"][0]["val_pair_loss"]
    final, expected = _weights(resumed.model), _weights(whole.model)
    assert final.keys() == expected.keys()
    for path in expected:
        np.testing.assert_array_equal(final[path], expected[path], err_msg=path)
    optimizer = [np.array(v) for v in resumed.optimizer.variables]
    assert len(optimizer) == len(whole.optimizer.variables)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(optimizer, whole.optimizer.variables))
    assert _loss_steps(str(run)) == list(range(1, 41)) == _loss_steps(whole.out_dir)


@pytest.mark.parametrize("per_class, flipped, unfrozen", [(8, "no_pairs", False), (33, "pairs", True)])
def test_auto_tries_the_pairs_stage_the_other_way_round_and_no_unfreeze_depth_it_would_not_use(
        tiny_bert, per_class, flipped, unfrozen):
    from tfft import tuning

    trainer = _text_trainer(tiny_bert, per_class)
    names = {c.name: c.values for c in tuning.auto_candidates(trainer.recipe, trainer)}
    assert names[flipped] == {"schedule.kind": "two_phase", "schedule.pairs": flipped == "pairs"}
    # With pairs on, two_phase trains no top groups: schedule.unfreeze=0 would be the recommended run again.
    assert ("all_groups" in names) == unfrozen
