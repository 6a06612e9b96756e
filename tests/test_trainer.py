"""The schedule engine's guarantees, each on a real (tiny) fine-tuning run."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfft.errors import RecipeError
from tfft.recipe import Recipe
from tfft.testing import TinyTrainer, write_image_folder

pytestmark = pytest.mark.filterwarnings("ignore")


def _recipe(data_dir, *overrides):
    base = [
        f"data.path={data_dir!s}", "data.batch_size=8", "data.augment={}", "data.validation_split=0.25",
        "backbone.input_size=32", "schedule.kind='two_phase'", "schedule.head_epochs=1", "schedule.epochs=2",
        "schedule.unfreeze=1", "schedule.lr=0.01", "schedule.finetune_lr=0.01", "output.log_every=1",
    ]
    return Recipe().with_overrides(base + list(overrides))


def _snapshot(trainer):
    return {g.name: [v.numpy().copy() for v in g.variables] for g in trainer.groups}


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


class Recording(TinyTrainer):
    """Records every group's weights and the optimizer's moments around each stage."""

    def on_stage_begin(self, stage, index):
        self.begin = getattr(self, "begin", []) + [(_snapshot(self), _moments(self))]

    def on_stage_end(self, stage, index, logs):
        self.end = getattr(self, "end", []) + [(_snapshot(self), _moments(self))]


def _moments(trainer):
    head = {id(v) for v in trainer.groups[-1].variables}
    optimizer = trainer.group_optimizer
    values = {}
    for i, variable in enumerate(optimizer._trainable_variables):
        if id(variable) in head:
            values[variable.path] = optimizer._momentums[i].numpy().copy()
    return values


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    write_image_folder(directory, num_classes=3, per_class=12, size=32)
    return directory


@pytest.fixture(scope="module")
def two_phase_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    trainer = Recording(_recipe(data_dir), out_dir=str(out / "run"), verbose=0)
    metrics = trainer.run()
    return trainer, metrics


def test_frozen_groups_do_not_change_by_a_bit_and_trained_groups_do(two_phase_run):
    trainer, _ = two_phase_run
    (head_before, _), (finetune_before, _) = trainer.begin
    (head_after, _), (finetune_after, _) = trainer.end
    for name in ["stem", "conv2", "conv3", "conv4"]:
        assert _same(head_before[name], head_after[name]), f"{name} moved while frozen"
    assert not _same(head_before["head"], head_after["head"])
    for name in ["stem", "conv2", "conv3"]:
        assert _same(finetune_before[name], finetune_after[name]), f"{name} moved while frozen"
    conv4 = trainer.groups[3]
    kernels = [i for i, v in enumerate(conv4.variables) if "kernel" in v.path]
    assert kernels and all(not np.array_equal(finetune_before["conv4"][i], finetune_after["conv4"][i]) for i in kernels)


def test_batchnorm_statistics_stay_fixed_in_unfrozen_groups_by_default(two_phase_run):
    trainer, _ = two_phase_run
    (before, _), (after, _) = trainer.begin[1], trainer.end[1]
    conv4 = trainer.groups[3]
    bn = [i for i, v in enumerate(conv4.variables) if "_bn/" in v.path]
    assert len(bn) >= 8  # gamma, beta, moving mean and variance of two BatchNorms
    assert all(np.array_equal(before["conv4"][i], after["conv4"][i]) for i in bn)


def test_head_moments_survive_the_unfreeze(two_phase_run):
    trainer, _ = two_phase_run
    (_, end_of_head), (_, begin_of_finetune) = trainer.end[0], trainer.begin[1]
    assert end_of_head and all(np.any(m != 0) for m in end_of_head.values())
    for path, value in end_of_head.items():
        np.testing.assert_array_equal(begin_of_finetune[path], value)


@pytest.mark.slow  # a whole run and its files: 27 s beside other work
def test_run_directory_holds_results(two_phase_run):
    trainer, metrics = two_phase_run
    out = trainer.out_dir
    assert sorted(os.listdir(out)) == ["checkpoints", "metrics.json", "model.keras", "recipe.json", "tensorboard"]
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["accuracy"] == metrics["accuracy"] and set(saved["per_class"]) == {"class0", "class1", "class2"}
    assert [s["name"] for s in saved["stages"]] == ["head", "finetune"]
    assert np.array(saved["confusion_matrix"]).sum() == saved["num_examples"] == 9
    # Finished, the run resumes no more: its full checkpoints (optimizer included) are gone.
    assert os.listdir(os.path.join(out, "checkpoints")) == ["best"]
    assert not os.path.exists(os.path.join(out, "checkpoints", "best", "optimizer.npz"))
    # The model loads with plain Keras: no tfft objects, no optimizer inside.
    script = f"import keras; m = keras.models.load_model({os.path.join(out, 'model.keras')!r}); print(getattr(m, 'optimizer', None))"
    check = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "None", check.stderr[-500:]
    loaded = keras.models.load_model(os.path.join(out, "model.keras"))
    x = np.zeros((2, 32, 32, 3), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trainer.model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kept, steps", [("last", ["step-000008"]),
                                         ("all", ["step-000002", "step-000004", "step-000006", "step-000008"])])
def test_output_checkpoints_keeps_the_newest_or_every_full_checkpoint(data_dir, tmp_path, kept, steps):
    trainer = TinyTrainer(_recipe(data_dir, f"output.checkpoints={kept!r}", "train.validate_every=2"),
                          out_dir=str(tmp_path / "run"), verbose=0)
    trainer.run()
    folder = os.path.join(trainer.out_dir, "checkpoints")
    found = sorted(name for name in os.listdir(folder) if name.startswith("step-"))
    assert found == steps
    with open(os.path.join(folder, found[-1], "state.json")) as f:
        state = json.load(f)
    assert state["stage_name"] == "finetune" and state["stage_index"] == 1 and state["position"] == 8
    assert os.path.isfile(os.path.join(folder, found[-1], "optimizer.npz"))
    with pytest.raises(RecipeError, match="Received: output.checkpoints='some'"):
        TinyTrainer(_recipe(data_dir, "output.checkpoints='some'"), out_dir=str(tmp_path / "bad")).setup()


def trainer_metrics_accuracy(trainer):
    with open(os.path.join(trainer.out_dir, "metrics.json")) as f:
        return json.load(f)["stages"][-1]["stage_end_accuracy"]


def test_tensorboard_has_one_step_axis_across_stages(two_phase_run):
    from tensorboard.backend.event_processing import event_accumulator as ea

    trainer, _ = two_phase_run
    train_dir = os.path.join(trainer.out_dir, "tensorboard", "train")
    acc = ea.EventAccumulator(train_dir, size_guidance={ea.TENSORS: 0, ea.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()["tensors"]
    steps = [e.step for e in acc.Tensors("loss")]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == int(trainer.optimizer.iterations)
    assert [int(e.step) for e in acc.Tensors("stage/index")] == [0, int(trainer.steps_per_epoch)]
    assert "stage/trainable_params" in tags and "learning_rate" in tags
    validation = ea.EventAccumulator(os.path.join(trainer.out_dir, "tensorboard", "validation"), size_guidance={ea.TENSORS: 0})
    validation.Reload()
    if trainer_metrics_accuracy(trainer) < 1.0:
        assert "misclassified/finetune/images" in validation.Tags()["tensors"] and "misclassified/finetune" in validation.Tags()["tensors"]
    assert {"confusion_matrix/head", "confusion_matrix/finetune", "epoch_loss"} <= set(validation.Tags()["tensors"]) or \
        {"confusion_matrix/head", "confusion_matrix/finetune", "loss"} <= set(validation.Tags()["tensors"])


def test_train_bn_option_updates_statistics(data_dir, tmp_path):
    trainer = Recording(_recipe(data_dir, "schedule.train_bn=True"), out_dir=str(tmp_path / "run"), verbose=0)
    trainer.run()
    before, after = trainer.begin[1][0]["conv4"], trainer.end[1][0]["conv4"]
    conv4 = trainer.groups[3]
    means = [i for i, v in enumerate(conv4.variables) if "moving_mean" in v.path]
    assert means and all(not np.array_equal(before[i], after[i]) for i in means)


def test_multiplier_zero_holds_a_trained_group_still(data_dir, tmp_path):
    stages = [dict(name="all", epochs=1, train="all", lr=0.01, multipliers={"conv3": 0.0})]
    trainer = Recording(_recipe(data_dir, "schedule.kind='custom'", f"schedule.stages={stages!r}"), out_dir=str(tmp_path / "r"), verbose=0)
    trainer.run()
    (before, _), (after, _) = trainer.begin[0], trainer.end[0]
    assert _same(before["conv3"], after["conv3"])
    assert not _same(before["conv4"], after["conv4"]) and not _same(before["conv2"], after["conv2"])


def test_plan_lists_groups_params_and_rates(data_dir):
    trainer = TinyTrainer(_recipe(data_dir, "schedule.decay=0.5", "schedule.unfreeze=2"), verbose=0)
    first, second = trainer.plan()
    assert [row[0] for row in first.groups] == ["stem", "conv2", "conv3", "conv4", "head"]
    assert [row[1] for row in first.groups] == [False, False, False, False, True]
    assert first.trainable_params == 32 * 3 + 3
    rates = {row[0]: row[3] for row in second.groups}
    assert rates == {"stem": 0.0, "conv2": 0.0, "conv3": pytest.approx(0.0025), "conv4": pytest.approx(0.005), "head": 0.01}
    assert second.steps == trainer.steps_per_epoch and second.bounds == (4, 8) and second.epochs == 1


def test_existing_run_directory_is_refused(data_dir, tmp_path):
    from tfft.errors import TfftError

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(TfftError, match="holds a finished run.*--overwrite"):
        TinyTrainer(_recipe(data_dir), out_dir=str(tmp_path / "run"), verbose=0).run()
    assert (tmp_path / "run" / "metrics.json").read_text() == "{}"


def test_mirrored_over_two_devices_keeps_the_guarantees(data_dir, tmp_path):
    recipe = _recipe(data_dir, "runtime.strategy='mirrored'", "runtime.devices=['/cpu:0', '/cpu:1']", "schedule.train_bn=True")
    trainer = Recording(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    assert trainer.strategy.num_replicas_in_sync == 2
    (before, _), (after, _) = trainer.begin[1], trainer.end[1]
    assert _same(before["conv3"], after["conv3"]) and not _same(before["conv4"], after["conv4"])
    assert 0.0 <= metrics["accuracy"] <= 1.0


class RandomInit(Recording):
    def build_backbone(self):
        backbone = super().build_backbone()
        backbone.pretrained = False
        return backbone


def test_random_backbone_trains_batchnorm_and_recomputes_its_statistics(data_dir, tmp_path, capsys):
    trainer = RandomInit(_recipe(data_dir, "schedule.precise_bn=2"), out_dir=str(tmp_path / "run"), verbose=1)
    trainer.run()
    assert [s.train_bn for s in trainer.stages] == [True, True]
    assert "recomputed the statistics of 3 BatchNorm layers over 2 training batches" in capsys.readouterr().out
    conv4 = trainer.groups[3]
    means = [i for i, v in enumerate(conv4.variables) if "moving_mean" in v.path]
    assert all(not np.array_equal(trainer.begin[1][0]["conv4"][i], trainer.end[1][0]["conv4"][i]) for i in means)
    assert TinyTrainer(_recipe(data_dir), verbose=0).plan()[1].stage.train_bn is False  # pretrained: frozen


class CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


class NewHead(TinyTrainer):
    """A subclass used from Python: its own head and an extra callback."""

    def build_head(self, features):
        x = keras.layers.Flatten(name="flat")(features)
        return keras.layers.Dense(self.num_classes, name="logits")(x)

    def build_callbacks(self, stage, index):
        self.counter = getattr(self, "counter", CountEpochs())
        return [self.counter]


def test_subclass_from_python_changes_the_head_and_adds_a_callback(data_dir, tmp_path):
    trainer = NewHead(_recipe(data_dir), out_dir=str(tmp_path / "run"), verbose=0)
    trainer.run()
    assert [layer.name for layer in trainer.groups[-1].layers] == ["flat", "logits"]
    assert trainer.counter.epochs == [0, 1]
    assert trainer.plan()[0].trainable_params == 4 * 4 * 32 * 3 + 3


def test_early_stopping_ends_a_stage_and_the_next_starts_as_planned(data_dir, tmp_path):
    # Nothing moves (every multiplier 0), so the validation loss never improves.
    still = {"head": 0.0}
    stages = [dict(name="still", epochs=4, train="head", lr=0.01, multipliers=still, early_stopping=1),
              dict(name="next", epochs=1, train="head", lr=0.01)]
    trainer = TinyTrainer(_recipe(data_dir, "schedule.kind='custom'", f"schedule.stages={stages!r}"),
                          out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    # Four steps an epoch: the first stage stops after two validations, 8 of its 16 steps.
    assert [(s["name"], s["steps_run"], s["steps"]) for s in metrics["stages"]] == [("still", 8, 16), ("next", 4, 4)]


@pytest.mark.slow  # three runs of fractional stages: 27 s beside other work
def test_stages_shorter_than_an_epoch_run_their_planned_steps_on_one_stream(data_dir, tmp_path):
    # 27 training images at batch 8: 4 steps an epoch; stages of 0.5, 1.25 and 0.75 epochs.
    stages = [dict(name="a", epochs=0.5, train="head", lr=0.01), dict(name="b", epochs=1.25, train="all", lr=0.003),
              dict(name="c", steps=3, train="head", lr=0.003)]
    trainer = TinyTrainer(_recipe(data_dir, "schedule.kind='custom'", f"schedule.stages={stages!r}"),
                          out_dir=str(tmp_path / "run"), verbose=0)
    planned = [(p.stage.name, p.steps, p.bounds) for p in trainer.plan()]
    assert planned == [("a", 2, (0, 2)), ("b", 5, (2, 7)), ("c", 3, (7, 10))]
    metrics = trainer.run()
    assert [(s["name"], s["steps_run"]) for s in metrics["stages"]] == [("a", 2), ("b", 5), ("c", 3)]
    assert trainer.position == 10 and int(trainer.optimizer.iterations) == 10
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(os.path.join(trainer.out_dir, "tensorboard", "train"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    assert [e.step for e in acc.Tensors("loss")] == list(range(1, 11))  # log_every=1: no gap, no repeat
    assert [int(e.step) for e in acc.Tensors("stage/index")] == [0, 2, 7]
    epochs = [float(np.asarray(tf_tensor(e))) for e in acc.Tensors("epoch")]
    assert epochs[-1] == pytest.approx(10 / 4)


def tf_tensor(event):
    import tensorflow as tf

    return tf.make_ndarray(event.tensor_proto)


def _blob_run(tmp_path, lr, trainer_class=None):
    from tfft.testing import BlobTrainer

    stages = [dict(name="head", steps=30, train="head", lr=0.05), dict(name="all", steps=40, train="all", lr=lr)]
    trainer = (trainer_class or BlobTrainer)(Recipe().with_overrides([
        "data.batch_size=16", "schedule.kind='custom'", f"schedule.stages={stages!r}"]),
        out_dir=str(tmp_path / f"run{lr}"), verbose=0)
    return trainer, trainer.run()


def test_a_collapsing_stage_is_rolled_back_and_retried_at_a_lower_rate(tmp_path, capsys):
    trainer, metrics = _blob_run(tmp_path, 0.5)
    second = metrics["stages"][1]
    out = capsys.readouterr().out
    assert "stage 'all': the training loss rose to" in out and "rolled back to the stage's start; trying again" in out
    assert second["attempts"] > 1 and second["lr"] < 0.5 and second["planned_lr"] == 0.5
    assert second["steps_run"] > 40  # the discarded attempts count on the step axis, nothing is replayed
    assert metrics["accuracy"] >= metrics["stages"][0]["stage_end_accuracy"]


def test_a_stage_that_keeps_collapsing_ends_where_it_started(tmp_path, capsys):
    from tfft.testing import BlobTrainer

    class Watch(BlobTrainer):
        def on_stage_begin(self, stage, index):
            self.start = [np.array(v) for v in self.model.weights]

    trainer, metrics = _blob_run(tmp_path, 30.0, Watch)
    assert metrics["stages"][1]["attempts"] == 3
    assert "ended the stage there, after 3 attempts" in capsys.readouterr().out
    assert all(np.array_equal(a, np.array(v)) for a, v in zip(trainer.start, trainer.model.weights))
    assert metrics["accuracy"] == metrics["stages"][0]["stage_end_accuracy"]


def test_a_stable_stage_is_not_touched_by_the_collapse_guard(tmp_path, capsys):
    _, metrics = _blob_run(tmp_path, 3e-3)
    assert [s["attempts"] for s in metrics["stages"]] == [1, 1] and "rolled back" not in capsys.readouterr().out


def test_validation_logged_while_batchnorm_trains_is_what_the_saved_model_scores(data_dir, tmp_path):
    trainer = RandomInit(_recipe(data_dir, "schedule.precise_bn=2", "schedule.epochs=3"), out_dir=str(tmp_path / "run"),
                         verbose=0)
    metrics = trainer.run()
    last = metrics["stages"][-1]
    # The last logged validation figure scores the very weights and statistics saved in model.keras.
    saved = keras.models.load_model(os.path.join(trainer.out_dir, "model.keras"))
    from tfft.evaluation import predict_outputs

    labels, logits = predict_outputs(saved, trainer.datasets.validation)
    assert last["val_accuracy"] == pytest.approx(float(np.mean(np.argmax(logits, -1) == labels.reshape(-1))))
    assert last["val_accuracy"] == pytest.approx(metrics["accuracy"])


def test_batchnorm_policy_follows_the_weights_of_a_keras_file(tmp_path):
    from tfft.backbones import build_backbone
    from tfft.testing import tiny_images, tiny_resnet

    fresh = tiny_resnet(32)
    fresh.save(tmp_path / "fresh.keras")
    untrained = build_backbone(str(tmp_path / "fresh.keras"))
    assert untrained.pretrained is False and "never trained" in untrained.note
    images, labels = tiny_images(size=32)
    head = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(fresh.output))
    model = keras.Model(fresh.input, head)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, epochs=1, verbose=0)  # BatchNorm statistics move
    fresh.save(tmp_path / "trained.keras")
    trained = build_backbone(str(tmp_path / "trained.keras"))
    assert trained.pretrained is True and trained.note == ""


def _guard_run(reference, losses):
    from tfft.callbacks.stage import CollapseGuard

    guard = CollapseGuard(reference=reference, chance=math.log(10))
    guard.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    guard.on_epoch_begin(0)
    for batch, _ in enumerate(losses):
        guard.on_train_batch_end(batch, {"loss": float(np.mean(losses[: batch + 1]))})  # Keras logs running means
    return guard


def test_the_jump_of_unfreezing_is_no_collapse_but_a_climb_is():
    # BatchNorm or dropout switched on in new groups: the loss jumps at the first step and stays.
    assert _guard_run(0.3, [1.5] * 20).collapsed is None
    # The rate at work: a stage starting near its reference and climbing toward chance.
    climbing = _guard_run(0.3, [0.35, 0.35] + list(np.linspace(0.4, 2.2, 18)))
    assert climbing.collapsed is not None and climbing.reference == pytest.approx(0.35)


@pytest.mark.slow
def test_each_set_of_weights_is_scored_once(data_dir, tmp_path, monkeypatch):
    """The epoch-end validation, the stage-end report and the final metrics share one pass
    over the validation split per set of weights."""
    from tfft import evaluation

    scored = []
    original = evaluation.predict_outputs

    def counting(model, dataset):
        scored.append(int(np.asarray(model.optimizer.iterations)))
        return original(model, dataset)

    monkeypatch.setattr(evaluation, "predict_outputs", counting)
    trainer = TinyTrainer(_recipe(data_dir, "train.restore_best=False"), out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    assert scored and len(scored) == len(set(scored)), scored  # no step scored twice
    assert scored[-1] == sum(s["steps_run"] for s in metrics["stages"])  # the final weights, once
