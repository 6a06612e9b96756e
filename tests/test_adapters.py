"""LoRA adapters on real (tiny) runs: what moves and what does not, stage after stage, the
optimizer's state, checkpoints and resuming, and the merged model that is saved."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from tfft import adapters
from tfft.errors import RecipeError, TfftError
from tfft.lora import lora_from_recipe
from tfft.recipe import Recipe
from tfft.testing import BlobTrainer, TinyTrainer, write_image_folder
from tfft.trainer import RunStopped, Trainer

pytestmark = pytest.mark.filterwarnings("ignore")

ADAPTERS = ("low_dense/lora_kernel_a", "low_dense/lora_kernel_b", "high_dense/lora_kernel_a", "high_dense/lora_kernel_b")
LOW_BASE = ("low_dense/kernel", "low_dense/bias", "low_bn/gamma", "low_bn/beta", "low_bn/moving_mean", "low_bn/moving_variance")
HIGH_BASE = ("high_dense/kernel", "high_dense/bias")
HEAD = ("head_logits/kernel", "head_logits/bias")


def _stages(*stages):
    return f"schedule.stages={list(stages)!r}"


def _recipe(*stages, extra=()):
    return Recipe().with_overrides(["data.batch_size=16", "schedule.kind='custom'", _stages(*stages)] + list(extra))


class Records:
    """Every weight, by path, when the run is set up and around each stage."""

    def setup(self):
        super().setup()
        if not hasattr(self, "initial"):
            self.initial = _weights(self.model)

    def on_stage_begin(self, stage, index):
        self.begin = getattr(self, "begin", []) + [_weights(self.model)]

    def on_stage_end(self, stage, index, logs):
        self.end = getattr(self, "end", []) + [_weights(self.model)]


class Recording(Records, BlobTrainer):
    """`BlobTrainer`, recording its weights."""


def _weights(model):
    return {v.path: np.array(v, copy=True) for v in model.weights}


def _moved(before, after):
    return {path for path in before if not np.array_equal(before[path], after[path])}


HEAD_STAGE = dict(name="head", steps=6, train="head", lr=0.01)
LORA_STAGE = dict(name="lora", steps=12, train="all", lr=0.01, lora=dict(rank=2, alpha=4))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "run"
    trainer = Recording(_recipe(HEAD_STAGE, LORA_STAGE), out_dir=str(out), verbose=0)
    metrics = trainer.run()
    return trainer, metrics


def test_only_adapters_and_head_move_and_pretrained_weights_stay_bit_identical(lora_run):
    trainer, metrics = lora_run
    assert _moved(trainer.begin[1], trainer.end[1]) == set(ADAPTERS + HEAD)
    final = _weights(trainer.model)  # after the best weights were restored from a checkpoint
    for path in LOW_BASE + HIGH_BASE:
        np.testing.assert_array_equal(final[path], trainer.initial[path], err_msg=path)
    assert metrics["stages"][1]["trainable_params"] == sum(final[path].size for path in ADAPTERS + HEAD)
    assert metrics["stages"][1]["lora"] == dict(rank=2, alpha=4.0, groups=["low", "high"])
    assert "lora" not in metrics["stages"][0]
    # Restoring the best weights (weights only, as at a run's end) keeps them apart too.
    from tfft.callbacks.checkpoints import load_checkpoint

    load_checkpoint(trainer.store.best_directory, trainer.model, trainer.optimizer)
    best = _weights(trainer.model)
    with np.load(os.path.join(trainer.store.best_directory, "adapters.npz")) as saved:
        assert all(np.array_equal(best[str(p)], saved[str(i)]) for i, p in enumerate(saved["paths"]))
    for path in LOW_BASE + HIGH_BASE:
        np.testing.assert_array_equal(best[path], trainer.initial[path], err_msg=path)


def test_the_optimizer_holds_no_state_for_pretrained_weights_under_adapters(lora_run):
    trainer, _ = lora_run
    built = [v.path for v in trainer.group_optimizer._trainable_variables]
    assert sorted(built) == sorted(ADAPTERS + HEAD)


def test_model_keras_holds_plain_layers_with_the_merged_kernels(lora_run):
    trainer, _ = lora_run
    path = os.path.join(trainer.out_dir, "model.keras")
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "lora" not in config
    saved = keras.models.load_model(path)
    assert not adapters.has_adapters(saved) and not [v.path for v in saved.weights if "lora" in v.path]
    x = np.random.default_rng(1).normal(size=(32, 8)).astype("float32")
    np.testing.assert_allclose(saved.predict(x, verbose=0), trainer.model.predict(x, verbose=0), rtol=0, atol=1e-5)
    # The kernel saved is the pretrained one plus the adapters' product, not the pretrained one.
    layer = trainer.model.get_layer("blob_mlp").get_layer("high_dense")
    merged = np.array(layer.kernel)
    assert not np.allclose(merged, np.array(layer._kernel))
    np.testing.assert_allclose(np.array(saved.get_layer("blob_mlp").get_layer("high_dense").kernel), merged, atol=1e-6)


def test_a_full_stage_after_a_lora_stage_and_a_lora_stage_after_a_full_one(tmp_path):
    stages = (HEAD_STAGE,
              dict(name="full_high", steps=6, train=["head", "high"], lr=0.01),
              dict(name="lora", steps=6, train="all", lr=0.01, lora=dict(rank=2)),
              dict(name="full_low", steps=6, train=["head", "low"], lr=0.01))
    trainer = Recording(_recipe(*stages), out_dir=str(tmp_path / "run"), verbose=0)
    trainer.run()
    moved = [_moved(b, e) for b, e in zip(trainer.begin, trainer.end)]
    assert moved[1] == set(HIGH_BASE + HEAD)  # adapters exist but hold still
    assert moved[2] == set(ADAPTERS + HEAD)  # the kernels trained in stage 2 hold still now
    # BatchNorm stays frozen by default; the adapters of low hold still while its kernel trains.
    assert moved[3] == {"low_dense/kernel", "low_dense/bias"} | set(HEAD)
    # Every variable some stage trains has optimizer state, the others none.
    built = {v.path for v in trainer.group_optimizer._trainable_variables}
    assert built == set(ADAPTERS + HEAD + HIGH_BASE) | {"low_dense/kernel", "low_dense/bias"}


def test_optimizer_state_shrinks_under_lora_against_full_fine_tuning_of_the_same_groups(tmp_path):
    data = tmp_path / "images"
    write_image_folder(data, num_classes=3, per_class=8, size=32)
    common = [f"data.path={data!s}", "data.batch_size=8", "backbone.input_size=32", "schedule.kind='two_phase'",
              "schedule.unfreeze=2", "schedule.steps=12"]
    sizes = {}
    for arm, extra in (("full", []), ("lora", ["schedule.lora={'rank': 2}"])):
        trainer = TinyTrainer(Recipe().with_overrides(common + extra), verbose=0, dry_run=True)
        plans = trainer.plan()
        sizes[arm] = adapters.optimizer_state(trainer.optimizer), plans[1].trainable_params
    (full_count, full_bytes), full_params = sizes["full"]
    (lora_count, lora_bytes), lora_params = sizes["lora"]
    # conv3 and conv4 hold three convolutions each: full fine-tuning keeps two moments for
    # each kernel and bias, LoRA for each of the two adapters that replace them (the
    # biases hold still), so as many variables, far smaller.
    assert lora_count == full_count == 1 + 2 * (6 * 2 + 2)
    assert lora_params < full_params / 3
    assert lora_bytes < full_bytes / 3


class Interrupted(BlobTrainer):
    """Sends itself SIGINT after global step 12, in the middle of the LoRA stage."""

    def build_callbacks(self, stage, index):
        import signal

        class Send(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(np.asarray(self.model.optimizer.iterations)) == 12:
                    os.kill(os.getpid(), signal.SIGINT)

        return [Send()]


def test_a_lora_run_resumes_exactly_with_its_adapters_and_pretrained_weights(tmp_path, lora_run):
    with pytest.raises(RunStopped):
        Interrupted(_recipe(HEAD_STAGE, LORA_STAGE), out_dir=str(tmp_path / "run"), verbose=0).run()
    # The signal's checkpoint, mid-stage: the weights file holds the merged kernels, so the
    # pretrained kernels and the adapters are kept apart beside it.
    with np.load(tmp_path / "run" / "checkpoints" / "step-000013" / "adapters.npz") as saved:
        kept = {str(path): saved[str(i)] for i, path in enumerate(saved["paths"])}
    assert set(kept) == set(ADAPTERS + HIGH_BASE + ("low_dense/kernel", "low_dense/bias"))
    resumed = Recording(_recipe(HEAD_STAGE, LORA_STAGE), out_dir=str(tmp_path / "run"), verbose=0)
    metrics = resumed.run()
    assert [s["steps_run"] for s in metrics["stages"]] == [6, 12]
    whole, _ = lora_run  # the same recipe, uninterrupted
    final, reference = _weights(resumed.model), _weights(whole.model)
    for path in reference:
        np.testing.assert_array_equal(final[path], reference[path], err_msg=path)
    for path in LOW_BASE + HIGH_BASE:
        np.testing.assert_array_equal(final[path], resumed.initial[path], err_msg=path)


def test_weights_without_adapters_are_refused_by_a_model_with_them(tmp_path, lora_run):
    from tfft.callbacks.checkpoints import load_checkpoint, save_checkpoint

    plain = BlobTrainer(_recipe(HEAD_STAGE, dict(LORA_STAGE, lora=None)), verbose=0)
    plain.setup()
    save_checkpoint(tmp_path / "best", plain.model, plain.optimizer, {"step": 0}, include_optimizer=False)
    trainer, _ = lora_run
    before = _weights(trainer.model)
    with pytest.raises(TfftError, match=r"^The model has LoRA adapters but the checkpoint holds none \(adapters.npz"):
        load_checkpoint(tmp_path / "best", trainer.model, trainer.optimizer)
    assert not _moved(before, _weights(trainer.model))  # refused before anything was loaded


class Normed(BlobTrainer):
    """Three groups: `low` (Dense), `mid` (a LayerNormalization alone) and `high` (Dense)."""

    def build_backbone(self):
        from tfft.backbones import Backbone
        from tfft.freezing import GroupRules

        inputs = keras.Input((self.blobs["dims"],), name="points")
        x = keras.layers.Dense(16, activation="relu", name="low_dense")(inputs)
        x = keras.layers.LayerNormalization(name="mid_norm")(x)
        x = keras.layers.Dense(16, activation="relu", name="high_dense")(x)
        rules = GroupRules(patterns=((r"(low|mid|high)_", r"\1"),))
        return Backbone(keras.Model(inputs, x, name="normed_mlp"), None, rules, "blob", "normed_mlp")


def test_a_group_without_an_adaptable_layer_is_an_error_only_when_named(tmp_path):
    named = Normed(_recipe(HEAD_STAGE, dict(LORA_STAGE, lora=dict(groups=["mid", "high"]))), verbose=0, dry_run=True)
    with pytest.raises(RecipeError) as error:
        named.setup()
    assert str(error.value) == (
        "schedule.stages[1].lora.groups names 'mid', which has no Dense, EinsumDense or Conv1D/2D/3D layer: LoRA "
        "has nothing to adapt there. Train it in full (leave it out of lora.groups) or name other groups. "
        "Received: schedule.stages[1].lora={'groups': ['mid', 'high']}")
    # By default every trained group is adapted: `mid` has nothing to adapt, so nothing in it trains.
    trainer = Normed(_recipe(HEAD_STAGE, LORA_STAGE), verbose=0, dry_run=True)
    plan = trainer.plan()[1]
    assert plan.adapted == ("low", "mid", "high") and set(plan.adapters) == {"low", "high"}
    rows = {name: params for name, _, params, _ in plan.groups}
    assert rows["mid"] == 0 and rows["low"] == 8 * 2 + 2 * 16 and rows["high"] == 16 * 2 + 2 * 16


TICKETS = {"billing": ["I was charged twice", "my invoice is wrong", "refund the extra fee", "the bill is too high"],
           "login": ["I cannot sign in", "the password reset fails", "my account is locked", "login keeps failing"]}


def test_a_keras_hub_encoder_adapts_the_layers_keras_hub_names(tmp_path):
    pytest.importorskip("keras_hub")
    manifest = tmp_path / "tickets.csv"
    manifest.write_text("text,label\n" + "".join(f"{t},{label}\n" for label, texts in TICKETS.items() for t in texts))
    common = ["data.kind='text'", f"data.manifest={str(manifest)!r}", "data.sequence_length=16", "data.batch_size=4",
              "backbone.name='minilm-l6'", "schedule.kind='two_phase'", "schedule.steps=6", "schedule.unfreeze=0",
              "schedule.pairs=False"]  # a fine-tuning stage through adapters, not SetFit's two steps
    trainer = Trainer(Recipe().with_overrides(common + ["schedule.lora={'rank': 4}"]), verbose=0,
                                     dry_run=True)
    plan = next(stage for stage in trainer.plan() if stage.stage.name == "finetune")
    blocks = [f"transformer_layer_{i}" for i in range(6)]
    # keras-hub's Backbone.default_lora_layer_names(): the attention's query and value.
    assert plan.adapted == ("embeddings", *blocks) and list(plan.adapters) == blocks
    assert all(sorted(own.layer_names) == ["query", "value"] for own in plan.adapters.values())
    rows = {name: params for name, _, params, _ in plan.groups}
    assert rows["embeddings"] == 0  # nothing to adapt there: it stays as pretrained
    # Keras factors an EinsumDense kernel (384, 12 heads, 32) along its last axis: A is
    # (384, 12, 4), B (4, 32).
    assert rows["transformer_layer_0"] == 2 * (384 * 12 * 4 + 4 * 32)
    # Adapters and head only: two float32 moments for each of 6 x 4 adapters and 2 head
    # variables, and the int64 step counter.
    assert adapters.optimizer_state(trainer.optimizer) == (1 + 2 * (6 * 4 + 2), 4 * 2 * plan.trainable_params + 8)
    named = lora_from_recipe({"groups": ["embeddings"]})
    with pytest.raises(RecipeError, match=r"names 'embeddings', which has no layer named \['query', 'query_dense', "
                                          r"'value', 'value_dense'\]"):
        adapters.enable(trainer.groups, {"embeddings": named}, trainer.group_names, trainer.backbone.lora_layers)


@pytest.mark.slow  # a run, its SavedModel export and a second recipe on its model.keras
def test_export_and_a_new_recipe_get_the_merged_plain_model(tmp_path):
    import tensorflow as tf

    from tfft.backbones import build_backbone
    from tfft.evaluation import predict_outputs
    from tfft.export import export_run

    data = tmp_path / "images"
    write_image_folder(data, num_classes=3, per_class=8, size=32)
    recipe = Recipe().with_overrides([
        f"data.path={data!s}", "data.batch_size=8", "data.augment={}", "backbone.input_size=32", "schedule.steps=8",
        "schedule.lr=0.01", "schedule.finetune_lr=0.01", "schedule.lora={'rank': 2, 'groups': ['conv4']}"])
    recipe.trainer = TinyTrainer  # recorded in the run, so that the export builds the same preprocessing
    trainer = TinyTrainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    trainer.run()
    conv = trainer.model.get_layer("tiny_resnet").get_layer("conv4_block1_2_conv")
    assert conv.lora_enabled and np.any(np.array(conv.lora_kernel_b) != 0)  # the adapters trained

    exported = export_run(tmp_path / "run")
    served = tf.saved_model.load(exported)
    assert not [v.name for v in served.variables if "lora" in v.name]
    # The export serves files as the adapted model scored the validation split.
    files = [path for path, _ in trainer.datasets.items["validation"]]
    out = served.signatures["serving_default"](image_bytes=tf.constant([open(f, "rb").read() for f in files]))
    _, logits = predict_outputs(trainer.model, trainer.datasets.validation)
    np.testing.assert_allclose(out["probabilities"].numpy(), tf.nn.softmax(logits).numpy(), rtol=0, atol=1e-5)

    # The model.keras is the backbone of another recipe: plain layers, LoRA can be put on again.
    backbone = build_backbone(str(tmp_path / "run" / "model.keras"))
    assert not adapters.has_adapters(backbone.model)
    again = TinyTrainer(recipe.with_overrides([f"backbone.name={str(tmp_path / 'run' / 'model.keras')!r}"]),
                        verbose=0, dry_run=True)
    again.build_backbone = lambda: backbone
    assert again.plan()[1].adapted == ("conv4",)


@pytest.mark.slow  # the real MiniLM, trained through adapters
def test_minilm_trains_query_and_value_adapters_and_saves_them_merged(tmp_path):
    manifest = tmp_path / "tickets.csv"
    manifest.write_text("text,label\n" + "".join(f"{t},{label}\n" for label, texts in TICKETS.items() for t in texts * 2))
    stages = [dict(name="head", steps=3, train="head", lr=3e-3),
              dict(name="lora", steps=6, train=["head", "top:2"], lr=3e-3, lora=dict(rank=4, alpha=8))]
    recipe = Recipe().with_overrides([
        "data.kind='text'", f"data.manifest={str(manifest)!r}", "data.sequence_length=16", "data.batch_size=4",
        "data.validation_split=0.25", "backbone.name='minilm-l6'", "schedule.kind='custom'", f"schedule.stages={stages!r}"])

    class Text(Records, Trainer):
        """The plain Trainer, recording its weights."""

    trainer = Text(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    trainer.run()
    moved = _moved(trainer.begin[1], trainer.end[1])
    adapted = {p for p in moved if "lora_kernel" in p}
    assert len(adapted) == 2 * 2 * 2  # query and value of two layers, A and B each
    assert moved - adapted == {p for p in moved if p.startswith("head_logits/")}
    final = _weights(trainer.model)
    assert all(np.array_equal(final[p], trainer.initial[p]) for p in final if "lora" not in p and "head_logits" not in p)
    saved = keras.models.load_model(os.path.join(trainer.out_dir, "model.keras"))
    assert not adapters.has_adapters(saved)
    tokens = trainer.backbone.preprocess(["I was charged twice", "my account is locked"])
    np.testing.assert_allclose(saved.predict(tokens, verbose=0), trainer.model.predict(tokens, verbose=0), atol=1e-5)


def test_a_model_file_remembers_the_layers_lora_adapts(tmp_path):
    from tfft.backbones.files import load_backbone_file
    from tfft.model_file import write_metadata
    from tfft.testing import tiny_resnet

    path = str(tmp_path / "model.keras")
    tiny_resnet(32).save(path)
    write_metadata(path, dict(groups=[("stem", "conv1_conv"), ("rest", "conv2_block1_1_conv")],
                              lora_layers=["query", "value"]))
    assert load_backbone_file(path).lora_layers == ("query", "value")
    tiny_resnet(32).save(tmp_path / "plain.keras")
    assert load_backbone_file(str(tmp_path / "plain.keras")).lora_layers is None
