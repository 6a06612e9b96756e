import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from tfft.callbacks.tensorboard import TensorBoardLogger
from tfft.callbacks.tensorboard import flatten_hparams
from tfft.errors import TfftError
from tfft.testing import hparams_sessions

NUM_EXAMPLES = 32
BATCH_SIZE = 4
STEPS_PER_EPOCH = NUM_EXAMPLES // BATCH_SIZE


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(NUM_EXAMPLES, 4)).astype("float32")
    y = rng.integers(0, 3, size=NUM_EXAMPLES)
    return x, y


def _model(units=3, learning_rate=1e-2):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(units)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _fit(model, callbacks, initial_epoch, epochs):
    x, y = _data()
    model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        validation_data=(x[:8], y[:8]),
        initial_epoch=initial_epoch,
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )


def _events(path):
    accumulator = event_accumulator.EventAccumulator(
        str(path),
        size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0},
    )
    accumulator.Reload()
    return accumulator


def _series(accumulator, tag):
    events = accumulator.Tensors(tag)
    return [e.step for e in events], [tf.make_ndarray(e.tensor_proto).item() for e in events]


# TensorBoardLogger


@pytest.fixture(scope="module")
def two_stage_logdir(tmp_path_factory):
    """Two `fit` calls with one logger; returns the logdir and what the optimizer did."""
    logdir = tmp_path_factory.mktemp("run") / "tensorboard"
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=5, decay_rate=0.5)
    model = _model(learning_rate=schedule)
    logger = TensorBoardLogger(
        logdir,
        update_freq=4,  # a multiple of the epoch length: batch and epoch writes meet
        group_learning_rates=lambda: {
            "head": model.optimizer.learning_rate,
            "backbone": model.optimizer.learning_rate * 0.1,
        },
    )
    logger.set_model(model)
    logger.log_hparams(
        {"schedule": {"epochs": 4, "stages": ["head", "all"]}, "seed": 1, "warmup": None},
        ["loss", "val_loss", "val_accuracy", "final/accuracy", "final/ece"],
    )
    logger.log_stage_begin(0, "head", 35, "| group | lr |\n|---|---|\n| head | 0.05 |")
    _fit(model, [logger], initial_epoch=0, epochs=2)
    logger.log_confusion_matrix(np.array([[3, 1], [0, 4]]), ["cat", "dog"], "head")
    logger.log_stage_begin(1, "all", 67, "| group | lr |\n|---|---|\n| all | 0.05 |")
    _fit(model, [logger], initial_epoch=2, epochs=4)
    logger.log_text("run/summary", "**done**")
    logger.log_run_end({"accuracy": 0.75, "macro_f1": 0.5, "ece": float("nan"), "num_examples": 8})
    logger.close()
    return logdir, schedule, int(model.optimizer.iterations)


def test_train_loss_is_on_one_continuous_step_axis(two_stage_logdir):
    logdir, _, final_step = two_stage_logdir
    assert final_step == 4 * STEPS_PER_EPOCH
    steps, losses = _series(_events(logdir / "train"), "loss")
    assert all(a < b for a, b in zip(steps, steps[1:])), steps
    # Batch writes every 4 steps plus epoch ends, across both fits: no restart at 0.
    assert steps == list(range(4, final_step + 1, 4))
    assert all(np.isfinite(losses))


def test_epoch_and_validation_scalars_use_the_global_step(two_stage_logdir):
    logdir, _, _ = two_stage_logdir
    epoch_ends = [STEPS_PER_EPOCH * n for n in range(1, 5)]
    train = _events(logdir / "train")
    assert _series(train, "epoch") == (epoch_ends, [1.0, 2.0, 3.0, 4.0])
    assert _series(train, "accuracy")[0] == epoch_ends
    validation = _events(logdir / "validation")
    assert {"loss", "accuracy"} <= set(validation.Tags()["tensors"])
    assert _series(validation, "loss")[0] == epoch_ends
    assert "val_loss" not in validation.Tags()["tensors"]
    assert "val_loss" not in train.Tags()["tensors"]


def test_learning_rates_equal_the_optimizer_schedule(two_stage_logdir):
    logdir, schedule, _ = two_stage_logdir
    train = _events(logdir / "train")
    steps, rates = _series(train, "learning_rate")
    assert len(steps) == len(set(steps)) == 8
    expected = [float(np.asarray(schedule(step))) for step in steps]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert rates[0] > rates[-1]  # the schedule really decays between the logged points
    group_steps, head_rates = _series(train, "learning_rate/head")
    assert group_steps == [STEPS_PER_EPOCH * n for n in range(1, 5)]
    np.testing.assert_allclose(head_rates, [expected[steps.index(s)] for s in group_steps], rtol=1e-6)
    _, backbone_rates = _series(train, "learning_rate/backbone")
    np.testing.assert_allclose(backbone_rates, np.array(head_rates) * 0.1, rtol=1e-5)


def test_stage_markers_text_and_confusion_matrix_image(two_stage_logdir):
    logdir, _, _ = two_stage_logdir
    train = _events(logdir / "train")
    assert _series(train, "stage/index") == ([0, 2 * STEPS_PER_EPOCH], [0.0, 1.0])
    assert _series(train, "stage/trainable_params")[1] == [35.0, 67.0]
    plans = [tf.make_ndarray(e.tensor_proto).item().decode() for e in train.Tensors("stage/plan")]
    assert "Stage 1: all" in plans[1] and "| all | 0.05 |" in plans[1]
    summary = train.Tensors("run/summary")
    assert summary[0].step == 4 * STEPS_PER_EPOCH
    assert tf.make_ndarray(summary[0].tensor_proto).item() == b"**done**"

    validation = _events(logdir / "validation")
    (image_event,) = validation.Tensors("confusion_matrix/head")
    assert image_event.step == 2 * STEPS_PER_EPOCH
    width, height, png = tf.make_ndarray(image_event.tensor_proto)
    image = tf.io.decode_png(png).numpy()
    assert image.shape == (int(height), int(width), 3)
    assert image.std() > 10


def test_hparams_are_written_for_the_hparams_dashboard(two_stage_logdir):
    logdir, _, _ = two_stage_logdir
    content = _events(logdir).PluginTagToContent("hparams")
    experiment = hparams_metadata.parse_experiment_plugin_data(
        content[hparams_metadata.EXPERIMENT_TAG]
    )
    assert {info.name for info in experiment.hparam_infos} == {
        "schedule.epochs",
        "schedule.stages",
        "seed",
        "warmup",
    }
    metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert metrics == {("train", "loss"), ("validation", "loss"), ("validation", "accuracy"),
                       ("", "final/accuracy"), ("", "final/ece")}
    session = hparams_metadata.parse_session_start_info_plugin_data(
        content[hparams_metadata.SESSION_START_INFO_TAG]
    )
    assert session.hparams["schedule.epochs"].number_value == 4
    assert session.hparams["schedule.stages"].string_value == "['head', 'all']"
    assert session.hparams["warmup"].string_value == "None"


def test_the_run_end_closes_the_hparams_session_with_the_final_metrics(two_stage_logdir):
    logdir, _, final_step = two_stage_logdir
    root = _events(logdir)
    content = root.PluginTagToContent("hparams")
    end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS and end.end_time_secs > 0
    # Beside the hparams, in the run root; a non-finite figure (no ECE) is left out.
    assert _series(root, "final/accuracy") == ([final_step], [0.75])
    assert _series(root, "final/macro_f1") == ([final_step], [0.5])
    assert "final/ece" not in root.Tags()["tensors"]


def test_the_hparams_dashboard_shows_the_final_metrics_beside_the_hparams(two_stage_logdir):
    logdir, _, _ = two_stage_logdir
    # Opened on the run's own folder (the session is then ".") and on the folder above it.
    for opened, session in ((logdir, "."), (logdir.parent, logdir.name)):
        ((hparams, metrics, sessions),) = hparams_sessions(opened)
        assert hparams["schedule.epochs"].number_value == 4
        assert metrics[("", "final/accuracy")] == pytest.approx(0.75)
        assert sessions == [(session, api_pb2.STATUS_SUCCESS)]


def test_flatten_hparams_values():
    flat = flatten_hparams({"a": {"b": np.float32(0.5), "c": True}, "d": (1, 2), "e": "x"})
    assert flat == {"a.b": 0.5, "a.c": True, "d": "(1, 2)", "e": "x"}
    assert type(flat["a.b"]) is float


def test_logger_validates_arguments_and_needs_a_model(tmp_path):
    with pytest.raises(TfftError, match="update_freq=0"):
        TensorBoardLogger(tmp_path, update_freq=0)
    with pytest.raises(TfftError, match="callable"):
        TensorBoardLogger(tmp_path, group_learning_rates={"head": 1e-3})
    logger = TensorBoardLogger(tmp_path)
    with pytest.raises(TfftError, match="set_model"):
        logger.log_text("note", "text")
    logger.log_text("note", "text", step=3)
    logger.close()
    assert _events(tmp_path / "train").Tensors("note")[0].step == 3


# MirroredStrategy over two logical CPU devices needs a fresh process: the devices must be
# configured before TensorFlow initialises its runtime.
MIRRORED_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    from tensorboard.backend.event_processing import event_accumulator
    from tfft.callbacks.checkpoints import CheckpointStore, RunCheckpoints, load_checkpoint
    from tfft.callbacks.tensorboard import TensorBoardLogger

    out = sys.argv[1]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.arange(32) % 3
    logger = TensorBoardLogger(out + "/tb", update_freq=2)
    store = CheckpointStore(out + "/ckpt")
    checkpoints = RunCheckpoints(store, monitor="loss")
    for first, last in ((0, 1), (1, 2)):
        logger.set_model(model)
        logger.log_stage_begin(first, f"stage{first}", 15, "plan")
        model.fit(x, y, batch_size=8, validation_data=(x, y), initial_epoch=first,
                  epochs=last, callbacks=[logger, checkpoints], verbose=0)
    logger.close()
    newest = store.steps()[0][1]
    saved = np.load(newest + "/optimizer.npz")
    for variable in model.optimizer.variables[2:]:
        variable.assign(variable + 1.0)
    load_checkpoint(newest, model, model.optimizer)
    restored = [np.asarray(v) for v in model.optimizer.variables]
    print("restored", all(np.array_equal(saved[str(i)], v) for i, v in enumerate(restored)))
    acc = event_accumulator.EventAccumulator(
        out + "/tb/train", size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    print("steps", [e.step for e in acc.Tensors("loss")])
    print("stage", [e.step for e in acc.Tensors("stage/index")])
    print("rates", sorted({float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("learning_rate")}))
    print("iterations", int(np.asarray(model.optimizer.iterations)))
    """
)


def test_logger_and_checkpoints_under_mirrored_strategy(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert lines["steps"] == "[2, 4, 6, 8]"
    assert lines["stage"] == "[0, 4]"
    assert lines["iterations"] == "8"
    assert lines["restored"] == "True"
    assert lines["rates"] == "[0.009999999776482582]"
