"""Training health: each layer group's drift from its pretrained weights, gradient norm and
update ratio, logged at every validation without changing what the run trains."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from tfft import health
from tfft.callbacks.health import MAX_UPDATE_RATIO, TrainingHealth
from tfft.freezing import LayerGroup
from tfft.recipe import Recipe
from tfft.testing import BlobTrainer

pytestmark = pytest.mark.filterwarnings("ignore")

# Three stages on the blobs: the head alone, then `high` with it, then everything with
# BatchNorm training; validations every 4 steps (steps 4, 8 | 12, 16, 20 | 24, 28).
STAGES = ("schedule.stages=[{'name': 'a', 'steps': 8, 'train': 'head', 'lr': 0.003}, "
          "{'name': 'b', 'steps': 12, 'train': ['high', 'head'], 'lr': 0.003}, "
          "{'name': 'c', 'steps': 8, 'train': 'all', 'lr': 0.001, 'train_bn': True}]")
BASE = ["data.batch_size=16", "schedule.kind='custom'", STAGES, "train.validate_every=4",
        "train.restore_best=False", "schedule.precise_bn=2"]


def _events(path):
    accumulator = event_accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def _series(path, tag):
    accumulator = _events(path)
    if tag not in accumulator.Tags()["tensors"]:
        return {}
    return {e.step: tf.make_ndarray(e.tensor_proto).item() for e in accumulator.Tensors(tag)}


def _health(run, group, figure):
    return _series(os.path.join(run, "tensorboard", "health", group), f"health/{figure}")


def _run(out, *overrides, trainer_class=BlobTrainer, verbose=0):
    trainer = trainer_class(Recipe().with_overrides(BASE + list(overrides)), out_dir=str(out), verbose=verbose)
    return trainer, trainer.run()


@pytest.fixture(scope="module")
def blob_run(tmp_path_factory):
    """The runs of the tests below pass their gradients eagerly (a tiny model's probe is
    fast); this one traces them, as a real backbone's."""
    out = tmp_path_factory.mktemp("health") / "run"
    trace_above, health.TRACE_ABOVE = health.TRACE_ABOVE, 0
    try:
        trainer, metrics = _run(out)
    finally:
        health.TRACE_ABOVE = trace_above
    return trainer, str(out), metrics


# What the trainer logs.


def test_a_frozen_group_stays_at_zero_and_a_trained_group_drifts(blob_run):
    _, run, _ = blob_run
    low = _health(run, "low", "distance_from_pretrained")
    high = _health(run, "high", "distance_from_pretrained")
    assert sorted(low) == sorted(high) == [4, 8, 12, 16, 20, 24, 28]
    assert [low[s] for s in (4, 8, 12, 16, 20)] == [0.0] * 5  # frozen until stage c
    assert low[24] > 0.0 and low[28] > low[24]
    assert high[4] == high[8] == 0.0  # frozen in stage a
    assert 0.0 < high[12] < high[16] < high[20]
    assert not _series(os.path.join(run, "tensorboard", "health", "head"), "health/distance_from_pretrained")


def test_gradient_norms_and_update_ratios_only_where_a_group_trains(blob_run):
    _, run, _ = blob_run
    assert sorted(_health(run, "head", "gradient_norm")) == [4, 8, 12, 16, 20, 24, 28]
    assert sorted(_health(run, "high", "gradient_norm")) == [12, 16, 20, 24, 28]
    assert sorted(_health(run, "low", "gradient_norm")) == [24, 28]
    ratios = _health(run, "high", "update_ratio")
    assert sorted(ratios) == [12, 16, 20, 24, 28]
    assert all(0.0 < value < MAX_UPDATE_RATIO for value in ratios.values())
    assert all(value > 0.0 for value in _health(run, "low", "gradient_norm").values())
    assert "health/warning" not in _events(os.path.join(run, "tensorboard", "train")).Tags()["tensors"]


def test_the_last_distance_is_that_of_the_final_weights_from_the_pretrained_ones(blob_run):
    trainer, run, _ = blob_run
    high = next(g for g in trainer.groups if g.name == "high")
    start = dict(zip([id(v) for v in trainer.model.weights], trainer._initial.weights))
    expected = health.relative_distance(health.read(high.trainable_candidates),
                                        [start[id(v)] for v in high.trainable_candidates])
    assert _health(run, "high", "distance_from_pretrained")[28] == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow  # two more runs: 23 s
def test_health_changes_no_weight(blob_run, tmp_path):
    """The probe runs the model in training mode (dropout in the head, BatchNorm training in
    stage c) at every validation: without putting their states back, the runs would part."""
    trainer, _, metrics = blob_run
    quiet, quiet_metrics = _run(tmp_path / "quiet", "output.health=False")
    assert not os.path.exists(tmp_path / "quiet" / "tensorboard" / "health")
    assert len(quiet.model.weights) == len(trainer.model.weights)
    for a, b in zip(quiet.model.weights, trainer.model.weights):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    assert quiet_metrics["loss"] == metrics["loss"]


class Meddler(BlobTrainer):
    """Writes into the frozen group `low` behind the optimizer's back: its BatchNorm
    statistics at step 2 (stage a), its kernel at step 10 (stage b)."""

    def build_callbacks(self, stage, index):
        trainer = self

        class Meddle(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                step = int(np.asarray(self.model.optimizer.iterations))
                if step == 2:
                    mean = trainer.model.get_layer("blob_mlp").get_layer("low_bn").moving_mean
                    mean.assign(mean + 0.5)
                elif step == 10:
                    kernel = trainer.model.get_layer("blob_mlp").get_layer("low_dense").kernel
                    kernel.assign(kernel * 1.01)

        return [Meddle()]


def test_a_frozen_group_that_moves_is_warned_once_per_stage(tmp_path, capsys):
    _, _ = _run(tmp_path / "run", trainer_class=Meddler, verbose=1)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("health warning")]
    assert printed == [
        "health warning at step 4, stage 'a': frozen layer group 'low' changed (low_bn/moving_mean): "
        "a BatchNorm layer in it runs in training mode",
        "health warning at step 12, stage 'b': frozen layer group 'low' changed (low_dense/kernel): "
        "something outside the optimizer writes to its weights",
    ]
    logged = _series(tmp_path / "run" / "tensorboard" / "train", "health/warning")
    assert {step: text.decode() for step, text in logged.items()} == {4: printed[0], 12: printed[1]}
    # The kernel moved: `low` is no longer at its pretrained weights though it never trained.
    low = _health(str(tmp_path / "run"), "low", "distance_from_pretrained")
    assert low[8] == 0.0 and low[12] > 0.0


# The callback on its own.


def _dense_model(dropout=0.0, batchnorm=False, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((4,)), keras.layers.Dense(6, name="body", kernel_regularizer=keras.regularizers.L2(0.01))]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization(name="norm"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="drop"))
    layers.append(keras.layers.Dense(3, name="out"))
    return keras.Sequential(layers)


def _blobs(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), (np.arange(n) % 3).astype("int32")


def test_gradient_norm_matches_a_hand_computation():
    x, y = _blobs(8)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L2(0.01))])
    kernel, bias = (np.asarray(v, "float64") for v in model.layers[0].weights)
    weights = {0: 1.0, 1: 2.0, 2: 0.5}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    norms = health.gradient_norms(model, (x, y), loss, {"all": model.trainable_weights}, class_weights=weights)
    # Cross-entropy on logits: d loss / d logits = w_i (softmax - one_hot) / n; L2 adds 2 * 0.01 * kernel.
    logits = x.astype("float64") @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    sample = np.array([weights[c] for c in y])[:, None]
    d_logits = sample * (probabilities - np.eye(3)[y]) / len(x)
    d_kernel = x.T.astype("float64") @ d_logits + 2 * 0.01 * kernel
    d_bias = d_logits.sum(0)
    expected = np.sqrt(np.sum(d_kernel**2) + np.sum(d_bias**2))
    assert norms["all"] == pytest.approx(expected, rel=1e-5)
    # A loss scale (float16 mixed precision) changes the backward pass, not the figure; nor
    # does tracing the pass.
    probe = health.GradientProbe(model, loss, {"all": model.trainable_weights}, class_weights=weights,
                                 trace_above=0)
    assert probe((x, y), loss_scale=1024.0)["all"] == pytest.approx(expected, rel=1e-5)
    assert probe.traced is not None
    assert probe((x, y), loss_scale=512.0)["all"] == pytest.approx(expected, rel=1e-5)


def test_the_probe_puts_back_dropout_and_batchnorm_state():
    x, y = _blobs(16)
    model = _dense_model(dropout=0.5, batchnorm=True)
    model.build((None, 4))
    state = health.forward_state(model, model.trainable_weights)
    assert {v.path.split("/")[-1] for v in state} >= {"moving_mean", "moving_variance", "seed_generator_state"}
    before = health.read(model.variables)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    probe = health.GradientProbe(model, loss, {"body": model.get_layer("body").trainable_weights}, trace_above=0)
    first = probe((x, y))
    assert all(np.array_equal(a, b) for a, b in zip(before, health.read(model.variables)))
    # Same state, same dropout mask: the probe gives the same figure every time, traced too.
    assert probe((x, y)) == pytest.approx(first, rel=1e-6) and probe.traced is not None
    assert all(np.array_equal(a, b) for a, b in zip(before, health.read(model.variables)))


def test_the_callback_warns_about_updates_too_large_and_keeps_its_history(capsys):
    x, y = _blobs(32)
    model = _dense_model()
    model.get_layer("body").trainable = False
    model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    groups = [LayerGroup("body", [model.get_layer("body")]), LayerGroup("top", [model.get_layer("out")])]
    probe = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    callback = TrainingHealth(groups, {"top"}, probe, model.loss, max_update_ratio=1e-3, stage="s")
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[callback], verbose=0, shuffle=False)
    assert [entry["step"] for entry in callback.history] == [4, 8]
    body, top = (callback.history[-1]["groups"][name] for name in ("body", "top"))
    assert body == {"distance_from_pretrained": 0.0}  # frozen: no gradient, no update
    assert set(top) == {"distance_from_pretrained", "gradient_norm", "update_ratio"}
    assert top["update_ratio"] > 1e-3 and top["distance_from_pretrained"] > 0.0
    assert callback.warnings == [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(callback.warnings) == 1 and callback.warnings[0].startswith(
        "health warning at step 4, stage 's': layer group 'top' changes by ")
    assert "of its size per step (above 0.001): its learning rate is too high" in callback.warnings[0]


def test_update_ratio_and_distance_definitions():
    assert health.relative_distance([np.array([3.0, 4.0])], [np.array([3.0, 4.0])]) == 0.0
    assert health.relative_distance([np.array([3.0, 4.0]), np.array([1.0])], [np.zeros(2), np.array([1.0])]) == 5.0
    assert health.update_ratio([np.array([2.0, 0.0])], [np.array([1.0, 0.0])], 5) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="Received: steps=0"):
        health.update_ratio([np.ones(2)], [np.ones(2)], 0)
    with pytest.raises(ValueError, match="Received: trained=\\['tail'\\]"):
        TrainingHealth([LayerGroup("head", [])], {"tail"}, None, None)


def test_metrics_json_has_the_final_loss(blob_run):
    trainer, run, metrics = blob_run
    with open(os.path.join(run, "metrics.json")) as file:
        saved = json.load(file)
    assert saved["loss"] == metrics["loss"] == pytest.approx(metrics["stages"][-1]["val_loss"], rel=1e-5)
    # With the best validation's weights restored, its loss (the monitor here), from its saved
    # predictions.
    best = trainer.checkpoints.best_info
    assert trainer.recipe.train.monitor == "val_loss"
    assert trainer._final_loss({"best": {"restored": True}}) == pytest.approx(best["value"], rel=1e-5)


# Distribution, mixed precision, resuming.


def _mirrored(tmp_path, *settings, stages=STAGES):
    """Runs the blobs on two logical devices, once per `output.health` setting; whether the
    runs ended with the same weights. Gradients traced, as a real backbone's."""
    overrides = [stages if o == STAGES else o for o in BASE]
    overrides += ["runtime.strategy='mirrored'", "runtime.devices=['/cpu:0', '/cpu:1']"]
    trace_above, health.TRACE_ABOVE = health.TRACE_ABOVE, 0
    weights = []
    try:
        for setting in settings:
            trainer, _ = _run(tmp_path / setting, *overrides, f"output.health={setting}")
            assert trainer.strategy.num_replicas_in_sync == 2
            weights.append([np.asarray(w) for w in trainer.model.weights])
    finally:
        health.TRACE_ABOVE = trace_above
    return {"same": all(np.array_equal(a, b) for a, b in zip(weights[0], weights[-1]))}


def test_under_a_mirrored_strategy_health_is_logged(blob_run, tmp_path):
    _mirrored(tmp_path, "True", stages=STAGES.rsplit(", {'name': 'c'", 1)[0] + "]")  # stages a and b
    run = str(tmp_path / "True")
    low, high = _health(run, "low", "distance_from_pretrained"), _health(run, "high", "distance_from_pretrained")
    assert low == {4: 0.0, 8: 0.0, 12: 0.0, 16: 0.0, 20: 0.0}
    assert high[8] == 0.0 and 0.0 < high[12] < high[20]
    assert sorted(_health(run, "high", "update_ratio")) == [12, 16, 20]
    # The probe runs outside the replicas, on the whole batch: the same figure as on one device.
    assert _health(run, "head", "gradient_norm")[4] == pytest.approx(
        _health(blob_run[1], "head", "gradient_norm")[4], rel=1e-4)


@pytest.mark.slow  # two mirrored runs
def test_under_a_mirrored_strategy_health_changes_no_weight(tmp_path):
    assert _mirrored(tmp_path, "True", "False") == {"same": True}


def test_under_float16_the_gradient_norm_is_measured_with_loss_scaling(blob_run, tmp_path):
    # Stage a as in the fixture, then four steps of everything (float16 is slow on CPUs).
    short = STAGES.split(", {'name': 'b'", 1)[0] + ", {'name': 'c', 'steps': 4, 'train': 'all', 'lr': 0.001}]"
    trainer, _ = _run(tmp_path / "run", short, "runtime.mixed_precision='mixed_float16'")
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    run = str(tmp_path / "run")
    assert sorted(_health(run, "low", "gradient_norm")) == [12]
    for group in ("head", "high", "low"):
        norms = _health(run, group, "gradient_norm")
        assert norms and all(np.isfinite(v) and v > 0.0 for v in norms.values())
    # Four steps of the head in float16 leave the weights near float32's: so is the gradient.
    assert _health(run, "head", "gradient_norm")[4] == pytest.approx(
        _health(blob_run[1], "head", "gradient_norm")[4], rel=0.02)


class Interrupted(BlobTrainer):
    """Sends itself SIGINT after global step 14 (stage b): the run stops with a checkpoint at 15."""

    def build_callbacks(self, stage, index):
        import signal

        class Send(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(np.asarray(self.model.optimizer.iterations)) == 14:
                    os.kill(os.getpid(), signal.SIGINT)

        return [Send()]


def test_a_resumed_run_measures_from_the_pretrained_weights_on_the_same_step_axis(blob_run, tmp_path):
    from tfft.trainer import RunStopped

    with pytest.raises(RunStopped):
        _run(tmp_path / "run", trainer_class=Interrupted)
    run = str(tmp_path / "run")
    assert sorted(_health(run, "high", "distance_from_pretrained")) == [4, 8, 12]
    _run(tmp_path / "run")  # resumes from step 15
    whole = blob_run[1]
    for group, figure in (("high", "distance_from_pretrained"), ("low", "distance_from_pretrained"),
                          ("high", "gradient_norm"), ("high", "update_ratio")):
        resumed, expected = _health(run, group, figure), _health(whole, group, figure)
        assert sorted(resumed) == sorted(expected), (group, figure)
        assert [resumed[s] for s in sorted(resumed)] == pytest.approx([expected[s] for s in sorted(expected)],
                                                                      rel=1e-5), (group, figure)


def test_a_lora_group_is_measured_by_the_kernels_its_layers_compute_with(tmp_path):
    # Under LoRA the pretrained kernel stays put and the adapters start from B = 0: the
    # drift and the updates that matter are those of W + alpha / rank * A @ B.
    stages = ("schedule.stages=[{'name': 'a', 'steps': 8, 'train': 'head', 'lr': 0.003}, "
              "{'name': 'lora', 'steps': 12, 'train': ['high', 'head'], 'lr': 0.003, "
              "'lora': {'rank': 2, 'alpha': 4}}]")
    trainer, _ = _run(tmp_path / "run", stages)
    run = str(tmp_path / "run")
    high = next(g for g in trainer.groups if g.name == "high")
    dense = next(layer for layer in high.layers if getattr(layer, "lora_enabled", False))
    start = dict(zip([id(v) for v in trainer.model.weights], trainer._initial.weights))
    np.testing.assert_array_equal(np.asarray(dense._kernel), start[id(dense._kernel)])  # W itself never moved
    merged = np.asarray(dense._kernel) + 2.0 * np.asarray(dense.lora_kernel_a) @ np.asarray(dense.lora_kernel_b)
    others = [v for v in high.trainable_candidates
              if v.path not in {dense._kernel.path, dense.lora_kernel_a.path, dense.lora_kernel_b.path}]
    expected = health.relative_distance([merged] + health.read(others),
                                        [start[id(dense._kernel)]] + [start[id(v)] for v in others])
    distance = _health(run, "high", "distance_from_pretrained")
    assert distance[4] == distance[8] == 0.0
    assert expected > 0.0 and distance[20] == pytest.approx(expected, rel=1e-5)
    ratios = _health(run, "high", "update_ratio")
    assert sorted(ratios) == [12, 16, 20] and all(0.0 < r < MAX_UPDATE_RATIO for r in ratios.values())
