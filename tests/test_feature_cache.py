"""A stage that trains the head alone on a frozen backbone fits on features computed once,
with the result of fitting end to end (`tfft.feature_cache`)."""

import json
import os

import keras
import numpy as np
import pytest

from tfft import feature_cache
from tfft.cli import format_stage
from tfft.distribute import batches_for_replicas
from tfft.modalities.image.pipeline import image_datasets
from tfft.modalities.text.pipeline import text_datasets
from tfft.recipe import Recipe
from tfft.testing import BlobTrainer, array_datasets, write_image_folder
from tfft.trainer import RunStopped

pytestmark = pytest.mark.filterwarnings("ignore")

STAGES = ("schedule.stages=[{'name': 'head', 'steps': 12, 'train': 'head', 'lr': 0.01}, "
          "{'name': 'all', 'steps': 6, 'train': 'all', 'lr': 0.003}]")
BASE = ["data.batch_size=16", "schedule.kind='custom'", STAGES, "head.dropout=0.5"]


class DropoutBlobs(BlobTrainer):
    """`BlobTrainer` with Dropout inside the backbone (as EfficientNet and BERT have):
    switched off while its group is frozen, so the frozen backbone's output is fixed."""

    def build_backbone(self):
        from tfft.backbones import Backbone
        from tfft.freezing import GroupRules

        inputs = keras.Input((self.blobs["dims"],), name="points")
        x = keras.layers.Dense(32, name="low_dense")(inputs)
        x = keras.layers.BatchNormalization(name="low_bn")(x)
        x = keras.layers.Activation("relu", name="low_relu")(x)
        x = keras.layers.Dropout(0.3, name="high_dropout")(x)
        x = keras.layers.Dense(32, activation="relu", name="high_dense")(x)
        rules = GroupRules(patterns=((r"(low|high)_", r"\1"),))
        return Backbone(keras.Model(inputs, x, name="blob_mlp"), None, rules, "blob", "blob_mlp")


class Counting(DropoutBlobs):
    """Records the data positions the training stream is read from (a stage's `fit`)."""

    def build_datasets(self):
        data = super().build_datasets()
        stream, self.read = data.train_stream, []

        def counted(position=0):
            self.read.append(position)
            return stream(position)

        data.train_stream = counted
        return data


def _run(tmp_path, name, *overrides, trainer=DropoutBlobs, **kwargs):
    run = trainer(Recipe().with_overrides(BASE + list(overrides)), out_dir=str(tmp_path / name), verbose=0, **kwargs)
    return run, run.run()


def _weights(model):
    return [np.array(v) for v in model.weights]


def test_the_order_numbers_the_examples_of_every_training_batch():
    x = np.arange(37, dtype="float32").reshape(-1, 1) * np.ones((1, 3), "float32")
    y = (np.arange(37) % 3).astype("int32")
    plain = array_datasets(x, y, x[:4], y[:4], batch_size=8, seed=5)
    for data in (plain, batches_for_replicas(plain, 2, 8)):  # the short last batch dropped
        for position in (0, 3, 5, 11):
            batches = list(data.train_stream(position).take(7))
            indices = list(data.index_stream(position).take(7))
            for (features, _), index in zip(batches, indices):
                np.testing.assert_array_equal(np.asarray(features)[:, 0], np.asarray(index))


def test_the_order_numbers_texts_and_images_as_their_pipelines_shuffle_them(tmp_path):
    texts = [f"text number {i}" for i in range(30)]
    path = tmp_path / "texts.csv"
    path.write_text("text,label\n" + "".join(f"{t},{'ab'[i % 2]}\n" for i, t in enumerate(texts)))
    data = text_datasets(csv=str(path), batch_size=4, seed=3, shuffle_buffer=7)
    listed = [item for item, _ in data.items["train"]]
    for (batch, _), index in zip(data.train_stream(2).take(9), data.index_stream(2).take(9)):
        assert [t.decode() for t in np.asarray(batch)] == [listed[i] for i in np.asarray(index)]
    in_order = [t.decode() for batch, _ in data.in_order() for t in np.asarray(batch)]
    assert in_order == listed

    write_image_folder(tmp_path / "images", num_classes=2, per_class=10, size=16)
    images = image_datasets(str(tmp_path / "images"), image_size=16, batch_size=4, seed=1)
    pictures = np.concatenate([np.asarray(x) for x, _ in images.in_order()])
    for (batch, _), index in zip(images.train_stream(1).take(6), images.index_stream(1).take(6)):
        np.testing.assert_array_equal(np.asarray(batch), pictures[np.asarray(index)])
    augmented = image_datasets(str(tmp_path / "images"), image_size=16, batch_size=4, augment=True)
    assert augmented.in_order is None


def test_a_head_stage_on_cached_features_ends_where_fitting_end_to_end_does(tmp_path):
    cached, metrics = _run(tmp_path, "cached", trainer=Counting)
    plain, plain_metrics = _run(tmp_path, "plain", "runtime.cache_features=False", trainer=Counting)
    for a, b in zip(_weights(cached.model), _weights(plain.model)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert metrics["accuracy"] == plain_metrics["accuracy"]
    assert [s["val_loss"] for s in metrics["stages"]] == pytest.approx([s["val_loss"] for s in plain_metrics["stages"]])
    # The head stage on features never read the training stream; end to end, it did.
    assert cached.read == [12] and plain.read == [0, 12]
    # Both saved models carry the backbone's Dropout at its rate, switched on again.
    saved = keras.models.load_model(os.path.join(cached.out_dir, "model.keras"))
    assert saved.get_layer("blob_mlp").get_layer("high_dropout").rate == 0.3
    assert cached.model.get_layer("blob_mlp").get_layer("high_dropout").rate == 0.3


def test_the_plan_says_which_stages_train_on_cached_features(tmp_path):
    trainer = DropoutBlobs(Recipe().with_overrides(BASE), out_dir=str(tmp_path / "run"), verbose=0)
    head, everything = trainer.plan()
    assert head.features == "cached" and everything.features is None
    assert "its outputs are computed once and the head trains on them" in format_stage(head, 2)
    off = DropoutBlobs(Recipe().with_overrides(BASE + ["runtime.cache_features=False"]), verbose=0).plan()[0]
    assert off.features == "runtime.cache_features is off"
    assert "computed at every step, because runtime.cache_features is off" in format_stage(off, 2)


def test_a_random_layer_before_the_head_keeps_a_stage_end_to_end(tmp_path):
    class Noisy(DropoutBlobs):
        def build_model(self, backbone_model):
            inputs = keras.Input((self.blobs["dims"],), name="inputs")
            noisy = keras.layers.GaussianNoise(0.1, name="input_noise")(inputs)
            return keras.Model(inputs, self.build_head(backbone_model(noisy)), name="tfft_classifier")

    stage_plan = Noisy(Recipe().with_overrides(BASE), verbose=0).plan()[0]
    assert stage_plan.features == "layer 'input_noise' before the head acts at random in training"


def test_frozen_dropout_is_off_and_comes_back_when_its_group_trains():
    from tfft.freezing import apply_freezing, restore_dropout

    trainer = DropoutBlobs(Recipe().with_overrides(BASE), verbose=0)
    trainer.setup()
    dropout = trainer.model.get_layer("blob_mlp").get_layer("high_dropout")
    head_dropout = trainer.model.get_layer("head_dropout")
    apply_freezing(trainer.groups, {"head"})
    assert dropout.rate == 0.0 and head_dropout.rate == 0.5
    assert dropout.get_config()["rate"] == 0.0  # why the model is saved only after `restore_dropout`
    apply_freezing(trainer.groups, {"head"})  # twice: the rate is still remembered
    apply_freezing(trainer.groups, {"high", "head"})
    assert dropout.rate == 0.3
    apply_freezing(trainer.groups, {"head"})
    restore_dropout(trainer.model)
    assert dropout.rate == 0.3


def test_features_above_the_memory_limit_go_to_a_file_a_resumed_run_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache, "MEMORY_LIMIT", 0)
    _, metrics = _run(tmp_path, "run")
    assert not os.path.exists(tmp_path / "run" / "features")  # the finished run removed its file
    monkeypatch.undo()
    _, memory_metrics = _run(tmp_path, "memory")
    assert metrics["accuracy"] == memory_metrics["accuracy"]

    from tfft.freezing import apply_freezing

    monkeypatch.setattr(feature_cache, "MEMORY_LIMIT", 0)
    trainer = DropoutBlobs(Recipe().with_overrides(BASE), verbose=0)
    trainer.setup()
    apply_freezing(trainer.groups, {"head"})
    written = feature_cache.build(trainer, str(tmp_path / "again"))
    key = written.key
    assert sorted(os.listdir(tmp_path / "again" / "features")) == [f"{key}.labels.npy", f"{key}.npy"]
    stamp = os.stat(tmp_path / "again" / "features" / f"{key}.npy").st_mtime_ns
    read = feature_cache.build(trainer, str(tmp_path / "again"))  # as a resumed run does
    assert isinstance(read.features, np.memmap) and read.features.shape == (trainer.datasets.num_train, 32)
    np.testing.assert_array_equal(np.asarray(read.features), np.asarray(written.features))
    assert os.stat(tmp_path / "again" / "features" / f"{key}.npy").st_mtime_ns == stamp
    # Other weights are other features: a new key.
    trainer.model.get_layer("blob_mlp").get_layer("low_dense").kernel.assign_add(np.ones((8, 32), "float32"))
    assert feature_cache.build(trainer, str(tmp_path / "again")).key != key


class Interrupted(DropoutBlobs):
    """Sends itself SIGINT after global step 7, mid-way through the cached head stage."""

    def build_callbacks(self, stage, index):
        import signal

        class Send(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(np.asarray(self.model.optimizer.iterations)) == 7:
                    os.kill(os.getpid(), signal.SIGINT)

        return [Send()] if index == 0 else []


def test_a_cached_stage_stopped_mid_way_resumes_to_the_uninterrupted_weights(tmp_path):
    overrides = ["train.checkpoint_every=3"]
    with pytest.raises(RunStopped) as stopped:
        _run(tmp_path, "run", *overrides, trainer=Interrupted)
    assert str(stopped.value).startswith("SIGINT: stopped at stage 1/2 'head', step 8 of 12")
    resumed, metrics = _run(tmp_path, "run", *overrides)
    assert [s["steps_run"] for s in metrics["stages"]] == [12, 6]
    assert int(np.asarray(resumed.optimizer.iterations)) == 18
    whole, _ = _run(tmp_path, "whole", *overrides)
    for a, b in zip(_weights(resumed.model), _weights(whole.model)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["stages"]
    assert [s["name"] for s in history] == ["head", "all"]
