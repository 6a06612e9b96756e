"""`tfft/distribute.py`: the mixed-precision policy `"auto"` picks per device, and a run under
`mixed_bfloat16` on CPU (what TPUs get): float32 variables, bfloat16 compute, float32 logits."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfft
from tfft.distribute import mixed_precision_policy
from tfft.errors import RecipeError
from tfft.recipe import Recipe
from tfft.testing import TinyTrainer, write_image_folder

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True)
def float32_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("capabilities, expected", [((), None), (((8, 0),), "mixed_float16"),
                                                    (((7, 0), (8, 6)), "mixed_float16"), (((6, 1),), None),
                                                    (((8, 0), (6, 1)), None)])
def test_auto_turns_float16_on_only_where_every_gpu_has_tensor_cores(monkeypatch, capabilities, expected):
    gpus = [f"GPU:{i}" for i in range(len(capabilities))]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda gpu: dict(compute_capability=capabilities[gpus.index(gpu)]))
    assert mixed_precision_policy("auto") == expected


def test_auto_is_bfloat16_under_a_tpu_strategy_and_settings_are_checked():
    tpu = tf.distribute.TPUStrategy.__new__(tf.distribute.TPUStrategy)  # the type is what counts
    assert mixed_precision_policy("auto", tpu) == "mixed_bfloat16"
    assert mixed_precision_policy("auto", tf.distribute.get_strategy()) is None  # this machine: CPU only
    assert mixed_precision_policy(True) == "mixed_float16" and mixed_precision_policy("float32") is None
    with pytest.raises(RecipeError, match="Received: runtime.mixed_precision='half'"):
        mixed_precision_policy("half")


def test_a_run_under_mixed_bfloat16_keeps_float32_weights_and_logits(tmp_path):
    write_image_folder(tmp_path / "images", num_classes=3, per_class=8, size=32)
    recipe = Recipe().with_overrides([
        f"data.path={str(tmp_path / 'images')!r}", "data.batch_size=8", "data.augment={}", "backbone.input_size=32",
        "schedule.kind='two_phase'", "schedule.steps=6", "schedule.lr=0.01", "schedule.finetune_lr=0.003",
        "runtime.mixed_precision='mixed_bfloat16'"])
    trainer = TinyTrainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    trainer.setup()
    start = [v.numpy().copy() for v in trainer.model.trainable_variables]
    floats = [v for v in trainer.model.variables if keras.backend.is_float_dtype(v.dtype)]
    assert floats and all(v.dtype == "float32" for v in floats)  # (a dropout's seed state is int64)
    computing = {layer.compute_dtype for layer in trainer.backbone.model.layers if layer.weights}
    assert computing == {"bfloat16"}
    assert trainer.model.output.dtype == "float32"  # the head's logits
    images, _ = next(iter(trainer.datasets.validation))
    assert trainer.model(images).dtype == "float32"
    metrics = trainer.run()
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(start, trainer.model.trainable_variables))


def test_float16_trains_with_loss_scaling(tmp_path):
    write_image_folder(tmp_path / "images", num_classes=3, per_class=8, size=32)
    recipe = Recipe().with_overrides([
        f"data.path={str(tmp_path / 'images')!r}", "data.batch_size=8", "data.augment={}", "backbone.input_size=32",
        "schedule.kind='two_phase'", "schedule.steps=6", "runtime.mixed_precision=True"])
    trainer = TinyTrainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    trainer.setup()
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert {layer.compute_dtype for layer in trainer.backbone.model.layers if layer.weights} == {"float16"}
    assert trainer.model.output.dtype == "float32"


class Executions(TinyTrainer):
    """Records the steps per execution each stage compiled with."""

    def on_stage_begin(self, stage, index):
        self.executions = getattr(self, "executions", []) + [self.model.steps_per_execution]


@pytest.mark.slow
def test_steps_per_execution_keeps_the_planned_step_counts(tmp_path):
    write_image_folder(tmp_path / "images", num_classes=3, per_class=12, size=32)  # 30 training images
    recipe = Recipe().with_overrides([
        f"data.path={str(tmp_path / 'images')!r}", "data.batch_size=6", "data.augment={}", "backbone.input_size=32",
        "schedule.kind='two_phase'", "schedule.steps=14", "schedule.head_steps=8", "schedule.lr=0.01",
        "schedule.finetune_lr=0.003", "train.validate_every=4", "runtime.steps_per_execution=4"])
    trainer = Executions(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    # 8 steps validated every 4: whole executions of 4; 6 steps validated every 4: 2 divides both.
    assert trainer.executions == [4, 2]
    assert [s["steps_run"] for s in metrics["stages"]] == [8, 6]
    assert int(trainer.optimizer.iterations) == 14
    with pytest.raises(RecipeError, match="Received: runtime.steps_per_execution=0"):
        TinyTrainer(recipe.with_overrides(["runtime.steps_per_execution=0"]), out_dir=str(tmp_path / "bad")).setup()


def test_training_batches_have_static_shapes_over_several_replicas(tmp_path):
    """What a TPU needs (it compiles one program per shape): every training batch of a run
    over several replicas has the global batch size, known before any batch is read."""
    write_image_folder(tmp_path / "images", num_classes=3, per_class=12, size=32)  # 30 training images
    recipe = Recipe().with_overrides([
        f"data.path={str(tmp_path / 'images')!r}", "data.batch_size=8", "data.augment={}", "backbone.input_size=32",
        "runtime.strategy='mirrored'", "runtime.devices=['/cpu:0', '/cpu:1']"])
    trainer = TinyTrainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    trainer.setup()
    images, labels = trainer.datasets.train_stream(0).element_spec
    assert images.shape.as_list() == [8, 32, 32, 3] and labels.shape.as_list()[0] == 8
    assert trainer.steps_per_epoch == 3  # 30 // 8: the short last batch is dropped
    sizes = [int(x.shape[0]) for x, _ in trainer.datasets.train_stream(0).take(7)]
    assert sizes == [8] * 7


@pytest.mark.slow  # a MiniLM-shaped encoder on two devices: 20 s
def test_a_text_run_trains_on_two_mirrored_devices(tmp_path):
    """Keras's first-batch build averages the batch over replicas, which a text batch's
    boolean padding mask does not allow (`tfft.multi_worker.install_keras_fixes`)."""
    import csv

    from tfft.modalities.text.demo import make_support_tickets
    from tfft.testing import write_tiny_bert

    folder = make_support_tickets(str(tmp_path / "tickets"), per_class=4, test_per_class=2)
    with open(os.path.join(folder, "tickets.csv"), newline="") as f:
        bert = write_tiny_bert(tmp_path / "bert", [row["text"] for row in csv.DictReader(f)])
    recipe = Recipe().with_overrides([
        "data.kind='text'", f"data.manifest={os.path.join(folder, 'tickets.csv')!r}", f"backbone.name={bert!r}",
        "data.sequence_length=32", "data.batch_size=8", "schedule.steps=6", "schedule.finetune_lr=1e-3",
        "runtime.strategy='mirrored'", "runtime.devices=['/cpu:0', '/cpu:1']"])
    trainer = tfft.Trainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    trainer.setup()
    encoder = [np.array(v) for v in trainer.backbone.model.weights]
    metrics = trainer.run()
    assert trainer.strategy.num_replicas_in_sync == 2
    # Few tickets per class on a pretrained encoder: a pairs stage, then the head (`tfft.pairs`);
    # each replica computes the pair loss on its half of the batch.
    assert [(s["name"], s["steps_run"]) for s in metrics["stages"]] == [("pairs", 3), ("head", 3)]
    assert 0 < metrics["stages"][0]["loss"] < 1
    # The pairs stage moved the encoder (frozen again in the head stage, so all its weights are compared).
    assert any(not np.array_equal(a, np.array(v)) for a, v in zip(encoder, trainer.backbone.model.weights))


def test_each_replica_draws_its_own_dropout_mask():
    import subprocess
    import sys
    import textwrap

    # A process of its own: the seeds are patched process-wide, and the unpatched masks are
    # part of the test.
    script = textwrap.dedent("""
        import numpy as np
        import tensorflow as tf
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from tfft.distribute import install_replica_seeds

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

        def masks():
            with strategy.scope():
                layer = keras.layers.Dropout(0.5, seed=3)
                step = tf.function(lambda: strategy.run(lambda: layer(tf.ones([64]), training=True)))
                return [np.asarray(m) for m in strategy.experimental_local_results(step())]

        before = masks()
        install_replica_seeds()
        install_replica_seeds()  # idempotent
        after = masks()
        print(int(np.array_equal(before[0], before[1])), int(np.array_equal(after[0], after[1])),
              int(np.array_equal(before[0], after[0])), float(np.mean(after[1] == 0)))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    same_before, same_after, first_kept, dropped = result.stdout.split()
    assert same_before == "1"  # what Keras does: one seed state, the same mask on every replica
    assert same_after == "0"  # each replica its own mask
    assert first_kept == "1"  # replica 0 draws as before
    assert 0.3 < float(dropped) < 0.7


@pytest.mark.slow  # two mirrored models in one process: 84 s beside other work
def test_a_second_mirrored_strategy_of_a_process_trains_another_model():
    # A search's next trial or a notebook's second run: with the group keys of the first
    # strategy, the second model's first all-reduce met the first one's shapes and failed.
    from tfft.distribute import resolve_strategy

    rng = np.random.default_rng(0)
    for width in (3, 7):
        strategy = resolve_strategy("mirrored", ["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(width), keras.layers.Dense(2)])
            model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        x = rng.normal(size=(16, 5)).astype("float32")
        history = model.fit(x, np.arange(16) % 2, batch_size=8, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
