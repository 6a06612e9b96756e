"""Fine-tuning the real, pretrained MiniLM encoder on a tiny text set."""

import numpy as np
import pytest

from tfft.modalities.text.encoders import build_text_encoder, resolve_preset
from tfft.errors import BackboneError
from tfft.freezing import layer_groups
from tfft.recipe import Recipe
from tfft.trainer import Trainer

pytestmark = pytest.mark.filterwarnings("ignore")

TEXTS = {
    "billing": ["I was charged twice for my order", "my invoice shows the wrong amount", "why is there an extra fee on my bill",
                "the payment was taken two times", "refund the duplicate charge please", "the statement lists a charge I never made",
                "my card was debited twice this month", "the price on the receipt is too high"],
    "login": ["I cannot sign in to my account", "the password reset link does not work", "my login keeps failing",
              "I am locked out after too many attempts", "two factor code never arrives", "it says my username is unknown",
              "cannot log into the app since yesterday", "the sign in page just reloads"],
    "shipping": ["my parcel has not arrived yet", "the tracking number shows no updates", "the package was delivered to the wrong house",
                 "when will my order be shipped", "the courier lost my box", "delivery is two weeks late",
                 "the parcel arrived damaged", "where is my shipment"],
}


@pytest.fixture(scope="module")
def tickets_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tickets.csv"
    lines = ["text,label"] + [f"{text},{label}" for label, texts in TEXTS.items() for text in texts]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_minilm_resolves_offline_with_block_aware_groups():
    backbone = build_text_encoder("minilm-l6", sequence_length=16)
    groups = layer_groups(backbone.model, rules=backbone.rules)
    assert [g.name for g in groups] == ["embeddings"] + [f"transformer_layer_{i}" for i in range(6)]
    tokens = backbone.preprocess(["my printer is broken"])
    assert tokens["token_ids"].shape == (1, 16) and int(tokens["token_ids"][0, 0]) == 101
    assert backbone.model.output.shape == (None, 384) and backbone.pretrained
    cls = build_text_encoder("minilm-l6", weights=None, sequence_length=16, pooling="cls")
    assert [g.name for g in layer_groups(cls.model, rules=cls.rules)][-1] == "pooler" and not cls.pretrained


def test_text_encoder_errors(tmp_path):
    with pytest.raises(BackboneError, match="has no config.json"):
        resolve_preset(str(tmp_path))
    with pytest.raises(BackboneError, match="directory not found"):
        resolve_preset(str(tmp_path / "missing" / "encoder"))
    with pytest.raises(BackboneError, match="weights='pretrained'"):
        build_text_encoder("minilm-l6", weights="imagenet")


class Recording(Trainer):
    def on_stage_begin(self, stage, index):
        self.begin = getattr(self, "begin", []) + [{g.name: [v.numpy().copy() for v in g.variables] for g in self.groups}]

    def on_stage_end(self, stage, index, logs):
        self.end = getattr(self, "end", []) + [{g.name: [v.numpy().copy() for v in g.variables] for g in self.groups}]


@pytest.mark.slow  # a real MiniLM fine-tune, three stages
def test_layerwise_decay_moves_layers_in_order_and_frozen_layers_not_at_all(tickets_csv, tmp_path):
    stages = [
        {"name": "head", "epochs": 1, "train": "head", "lr": 1e-3},
        {"name": "top", "epochs": 1, "train": ["head", "top:3"], "lr": 1e-3, "decay": 0.5},
    ]
    recipe = Recipe().with_overrides([
        "data.kind='text'", f"data.manifest={tickets_csv!r}", "data.sequence_length=16", "data.batch_size=8",
        "data.validation_split=0.25", "backbone.name='minilm-l6'", "schedule.kind='custom'", f"schedule.stages={stages!r}",
        "train.weight_decay=0.0",
    ])
    trainer = Recording(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    before, after = trainer.begin[1], trainer.end[1]
    for name in ["embeddings", "transformer_layer_0", "transformer_layer_1", "transformer_layer_2"]:
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after[name])), f"{name} moved while frozen"
    moved = {}
    for name in ["transformer_layer_3", "transformer_layer_4", "transformer_layer_5"]:
        moved[name] = np.mean([np.abs(a - b).mean() for a, b in zip(before[name], after[name]) if a.ndim == 2])
    assert 0 < moved["transformer_layer_3"] < moved["transformer_layer_4"] < moved["transformer_layer_5"], moved
    assert set(metrics["per_class"]) == set(TEXTS)
    # The fine-tuned text model loads again with tfft's and keras-hub's layers registered.
    import subprocess
    import sys

    script = ("import tfft, keras_hub, keras; m = keras.models.load_model("
              f"{str(tmp_path / 'run' / 'model.keras')!r}); print(m.output.shape)")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert loaded.returncode == 0 and "(None, 3)" in loaded.stdout, loaded.stderr[-800:]
    if metrics["accuracy"] < 1.0:  # the misclassified texts are shown at each stage end
        from tensorboard.backend.event_processing import event_accumulator as ea

        events = ea.EventAccumulator(str(tmp_path / "run" / "tensorboard" / "validation"), size_guidance={ea.TENSORS: 0})
        events.Reload()
        text = events.Tensors("misclassified/top")[0].tensor_proto.string_val[0].decode()
        assert "| text | true | predicted |" in text and any(t in text for texts in TEXTS.values() for t in texts)


@pytest.mark.slow  # a real MiniLM fine-tune
def test_multi_label_tickets_train_with_a_sigmoid_per_class(tmp_path):
    rows = ["text,label"]
    for i, (labels, text) in enumerate([("billing|refund", "I was charged twice, please refund me"),
                                        ("billing", "the invoice amount is wrong"),
                                        ("refund", "I want my money back for the order"),
                                        ("login", "I cannot sign in"),
                                        ("login|billing", "locked out and charged for a plan I cannot use")] * 4):
        rows.append(f"\"{text} ({i})\",{labels}")
    path = tmp_path / "multi.csv"
    path.write_text("\n".join(rows) + "\n")
    recipe = Recipe().with_overrides([
        "data.kind='text'", f"data.manifest={str(path)!r}", "data.multi_label=True", "data.label_delimiter='|'",
        "data.sequence_length=16", "data.batch_size=8", "backbone.name='minilm-l6'", "schedule.kind='custom'",
        "schedule.stages=[{'epochs': 1, 'train': 'head', 'lr': 0.01}]",
    ])
    trainer = Trainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    assert trainer.datasets.multi_label and isinstance(trainer.model.loss, keras_losses().BinaryCrossentropy)
    assert set(metrics) >= {"accuracy", "micro_f1", "macro_f1", "per_class"} and "confusion_matrix" not in metrics
    assert sorted(metrics["per_class"]) == ["billing", "login", "refund"]


def keras_losses():
    import keras

    return keras.losses
