"""Token classification (`data.task="tokens"`): the loss and accuracy that skip untagged
pieces, the entity report, and a whole run on a tiny BERT: plan, train (the head stage on
cached per-token features), evaluate, export and predict entity spans on raw text."""

import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

keras_hub = pytest.importorskip("keras_hub")

from tfft.cli import main  # noqa: E402
from tfft.errors import BackboneError, DataError  # noqa: E402
from tfft.modalities.text.contract_entities import contract_entity_splits, make_contract_entities  # noqa: E402
from tfft.modalities.text.entities import spans  # noqa: E402
from tfft.modalities.text.tagging import TokenAccuracy, TokenCrossentropy, TokenTagging  # noqa: E402
from tfft.recipe import Recipe  # noqa: E402
from tfft.testing import write_recipe, write_tiny_bert  # noqa: E402
from tfft.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")

TAGS = ["O", "B-DATE", "I-DATE", "B-PARTY", "I-PARTY"]


def test_loss_and_accuracy_leave_out_untagged_pieces():
    labels = np.array([[-1, 3, 4, -1, 0, -1], [-1, 1, -1, -1, -1, -1]])
    logits = np.random.default_rng(0).normal(size=(2, 6, 5)).astype("float32")
    tagged = labels >= 0
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(log_p, np.maximum(labels, 0)[..., None], -1)[..., 0][tagged])
    assert float(TokenCrossentropy(5)(labels, logits)) == pytest.approx(expected, rel=1e-5)
    # Untagged positions change nothing, whatever their logits.
    noisy = logits.copy()
    noisy[~tagged] = 50.0
    assert float(TokenCrossentropy(5)(labels, noisy)) == pytest.approx(expected, rel=1e-5)
    targets = 0.9 * np.eye(5)[np.maximum(labels, 0)] + 0.1 / 5
    smoothed = -np.mean((targets * log_p).sum(-1)[tagged])
    assert float(TokenCrossentropy(5, label_smoothing=0.1)(labels, logits)) == pytest.approx(smoothed, rel=1e-5)
    metric = TokenAccuracy()
    metric.update_state(labels, noisy)
    right = (logits.argmax(-1) == labels)[tagged].mean()
    assert float(metric.result()) == pytest.approx(right)


def test_report_scores_entities_and_counts_cut_words_as_outside():
    # Two sentences; the second's last two words lie past the sequence (no label).
    sentences = [("Acme Ltd pays on 1 May", (3, 4, 0, 0, 1, 2)), ("Bob Smith signs for Acme", (3, 4, 0, 0, 3))]
    labels = np.full((2, 8), -1)
    labels[0, 1:7] = [3, 4, 0, 0, 1, 2]
    labels[1, 1:4] = [3, 4, 0]
    logits = np.zeros((2, 8, 5), "float32")
    predicted = [[3, 4, 0, 0, 1, 1], [3, 0, 0]]  # "1 May" split in two; "Smith" missed
    for row, tags in enumerate(predicted):
        logits[row, np.arange(1, 1 + len(tags)), tags] = 5.0
    datasets = types.SimpleNamespace(items={"validation": sentences}, class_names=TAGS)
    report, wrong = TokenTagging().report(labels, logits, datasets)
    # True: Acme Ltd, 1 May | Bob Smith, Acme (cut). Predicted: Acme Ltd, 1, May | Bob.
    assert (report["num_entities"], report["num_predicted_entities"]) == (4, 4)
    assert report["entity_precision"] == 0.25 and report["entity_recall"] == 0.25 and report["entity_f1"] == 0.25
    assert report["per_entity"]["PARTY"] == dict(precision=0.5, recall=1 / 3, f1=pytest.approx(0.4), support=3,
                                                 predicted=2)
    assert (report["cut_words"], report["cut_entities"], report["num_words"], report["num_examples"]) == (2, 1, 11, 2)
    assert report["accuracy"] == pytest.approx(8 / 11)  # 9 words seen, 2 wrong; 2 cut words tagged O, 1 wrong
    assert report["class_names"] == TAGS and np.array(report["confusion_matrix"]).sum() == 11
    assert report["entity_types"] == ["DATE", "PARTY"]
    assert wrong == [(0, "Acme Ltd (PARTY); 1 May (DATE)", "Acme Ltd (PARTY); 1 (DATE); May (DATE)"),
                     (1, "Bob Smith (PARTY); Acme (PARTY)", "Bob (PARTY)")]
    scores = TokenTagging().validation_scores(datasets)(labels, logits)
    assert scores == {"accuracy": pytest.approx(8 / 11), "entity_f1": 0.25}


RECIPE = """
backbone = dict(name={bert!r})
data = dict(kind="text", task="tokens", conll={train!r}, validation_path={test!r}, sequence_length=40,
            batch_size=8)
schedule = dict(kind="two_phase", steps=8, lr=0.03, finetune_lr=0.003)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tagging")
    folder = make_contract_entities(str(root / "data"), per_type=4, test_sentences=8)
    train, test = contract_entity_splits(per_type=4, test_sentences=8)
    bert = write_tiny_bert(root / "bert", [" ".join(words) for words, _ in train + test], sequence_length=40)
    recipe = write_recipe(root / "ner.py", RECIPE.format(bert=bert, train=os.path.join(folder, "contracts_train.conll"),
                                                         test=os.path.join(folder, "contracts_test.conll")))
    result = CliRunner().invoke(main, ["run", recipe, "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    return types.SimpleNamespace(root=root, folder=folder, recipe=recipe, test=test, output=result.output,
                                 metrics=json.loads((root / "run" / "metrics.json").read_text()))


def test_a_run_trains_a_tag_per_word_and_reports_entities(run):
    # The head stage trained on the frozen encoder's per-token outputs, computed once.
    assert "computed the frozen backbone's outputs for the 16 training examples once" in run.output
    assert run.output.splitlines()[-3].startswith("validation entity F1 ")
    metrics = run.metrics
    assert metrics["task"] == "tokens" and metrics["num_examples"] == 8 and metrics["cut_words"] == 0
    assert sorted(metrics["per_entity"]) == ["AMOUNT", "COURT", "DATE", "PARTY"]
    assert metrics["num_entities"] == sum(len(spans(tags)) for _, tags in run.test)
    assert np.array(metrics["confusion_matrix"]).shape == (9, 9) and metrics["class_names"][0] == "O"
    assert "val_entity_f1" in metrics["stages"][-1] and 0.0 <= metrics["entity_f1"] <= 1.0
    from tfft.model_file import read_metadata

    assert read_metadata(str(run.root / "run" / "model.keras"))["task"] == "tokens"
    from tensorboard.backend.event_processing import event_accumulator as ea

    events = ea.EventAccumulator(str(run.root / "run" / "tensorboard" / "validation"), size_guidance={ea.TENSORS: 0})
    events.Reload()
    assert "entity_f1" in events.Tags()["tensors"]
    table = events.Tensors("misclassified/finetune")[0].tensor_proto.string_val[0].decode()
    assert "| sentence | true entities | predicted entities |" in table and "(PARTY)" in table
    # Training health per group, its gradient on a probe batch of whole sentences (padding
    # and word pieces after the first left out of the loss, as in training).
    health = ea.EventAccumulator(str(run.root / "run" / "tensorboard" / "health" / "head"), size_guidance={ea.TENSORS: 0})
    health.Reload()
    norms = [float(tf.make_ndarray(e.tensor_proto)) for e in health.Tensors("health/gradient_norm")]
    assert norms and all(np.isfinite(n) and n > 0 for n in norms)
    # The hparams dashboard shows the task's headline beside the recipe values.
    root = ea.EventAccumulator(str(run.root / "run" / "tensorboard"), size_guidance={ea.TENSORS: 0})
    root.Reload()
    final = float(tf.make_ndarray(root.Tensors("final/entity_f1")[-1].tensor_proto))
    assert final == pytest.approx(metrics["entity_f1"])


def test_evaluate_reads_conll_and_jsonl(run):
    jsonl = run.root / "test.jsonl"
    jsonl.write_text("".join(json.dumps({"tokens": words, "tags": tags}) + "\n" for words, tags in run.test))
    for data in (os.path.join(run.folder, "contracts_test.conll"), str(jsonl)):
        result = CliRunner().invoke(main, ["evaluate", str(run.root / "run"), "--data", data])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].split() == ["entity", "precision", "recall", "f1", "support"]
        assert any(line.startswith("entity F1 ") and "8 sentences" in line for line in lines)
    report = json.loads((run.root / "run" / "evaluations" / "test" / "metrics.json").read_text())
    assert report["entity_f1"] == pytest.approx(run.metrics["entity_f1"])  # the validation split, scored again
    assert report["drift"]["class_prior_shift"] == pytest.approx(0.0, abs=1e-9)
    assert sorted(os.listdir(run.root / "run" / "evaluations" / "test")) == \
        ["confusion_matrix.png", "metrics.json", "reliability.png"]


@pytest.mark.slow  # an export and predictions through it: 18 s beside other work
def test_export_and_predict_give_the_models_entity_spans_on_raw_text(run):
    import keras
    import tensorflow as tf

    result = CliRunner().invoke(main, ["export", str(run.root / "run")])
    assert result.exit_code == 0, result.output
    texts = [" ".join(words) for words, _ in run.test]
    served = tf.saved_model.load(str(run.root / "run" / "export" / "saved_model")).signatures["serving_default"](
        text=tf.constant(texts))
    # The model's own tags on the validation pipeline's inputs, read as entities in Python.
    from tfft.evaluate_run import labelled_datasets
    from tfft.recipe import recipe_from_run

    datasets = labelled_datasets(recipe_from_run(str(run.root / "run")), {}, str(run.root / "run"),
                                 os.path.join(run.folder, "contracts_test.conll"))
    model = keras.models.load_model(str(run.root / "run" / "model.keras"))
    tags = datasets.class_names
    logits = model.predict(datasets.validation, verbose=0)
    labels = np.concatenate([y.numpy() for _, y in datasets.validation])
    for row in range(len(texts)):
        words = texts[row].split(" ")
        guessed = [tags[i] for i in logits[row][labels[row] >= 0].argmax(-1)]
        offsets = np.cumsum([0] + [len(w) + 1 for w in words])
        expected = [(texts[row][offsets[a]:offsets[b - 1] + len(words[b - 1])], kind) for kind, a, b in spans(guessed)]
        count = int(served["entity_count"][row])
        got = [(texts[row][s:e], t.decode()) for s, e, t in zip(served["entity_start"][row].numpy()[:count],
                                                                  served["entity_end"][row].numpy()[:count],
                                                                  served["entity_type"][row].numpy()[:count])]
        assert got == expected
        assert [t.decode() for t in served["entity_text"][row].numpy()[:count]] == [text for text, _ in expected]
    assert (served["cut_words"].numpy() == 0).all()
    lines = CliRunner().invoke(main, ["predict", str(run.root / "run" / "export" / "saved_model"), "-", "--format",
                                      "jsonl"], input="\n".join(texts[:2]) + "\n").output.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["input"] for r in rows] == ["-:1", "-:2"]
    assert [e["text"] for e in rows[0]["entities"]] == [t.decode() for t in
                                                        served["entity_text"][0].numpy()[:int(served["entity_count"][0])]]
    from_run = CliRunner().invoke(main, ["predict", str(run.root / "run"), "-", "--format", "csv"], input=texts[0])
    assert from_run.output.splitlines()[0] == "input,start,end,type,text,score"
    assert len(from_run.output.splitlines()) == 1 + int(served["entity_count"][0])
    tflite = CliRunner().invoke(main, ["export", str(run.root / "run"), "--format", "tflite"])
    assert tflite.exit_code == 2 and "TFLite cannot serve this text model" in tflite.output


@pytest.mark.parametrize("overrides, error, message", [
    (["data.task='ner'"], DataError, "data.task must be one of ['classify', 'tokens']. Received: data.task='ner'"),
    (["data.task='tokens'", "data.manifest='x.csv'"], DataError, "data.manifest does not apply to data.task='tokens'"),
    (["data.task='tokens'", "data.multi_label=True"], DataError, "data.multi_label does not apply"),
    (["data.conll='x.conll'"], DataError, "data.conll holds tagged words, read by data.task='tokens'"),
    (["data.task='tokens'", "head.pooling='cls'"], DataError, "head.pooling does not apply to data.task='tokens'"),
    (["data.task='tokens'"], DataError, "No text data given: set one of data.conll=FILE, data.jsonl=FILE. "
                                        "Received: data.conll=None"),
    (["data.task='tokens'", "data.synthetic='tickets'"], DataError, "the built-in one is 'contracts'"),
])
def test_recipe_mistakes_are_one_line_before_training(overrides, error, message, tmp_path):
    recipe = Recipe().with_overrides(["data.kind='text'", "backbone.name='minilm-l6'"] + overrides)
    with pytest.raises(error) as raised:
        Trainer(recipe, out_dir=str(tmp_path / "run"), verbose=0, dry_run=True).setup()
    assert message in str(raised.value)


def test_a_keras_file_is_no_encoder_for_tags(run, tmp_path):
    recipe = Recipe().with_overrides(["data.kind='text'", "data.task='tokens'",
                                      f"backbone.name={str(run.root / 'run' / 'model.keras')!r}",
                                      f"data.conll={os.path.join(run.folder, 'contracts_train.conll')!r}"])
    with pytest.raises(BackboneError, match="data.task='tokens' fine-tunes a keras-hub encoder"):
        Trainer(recipe, out_dir=str(tmp_path / "run"), verbose=0, dry_run=True).setup()


class Interrupted(Trainer):
    """Sends itself SIGINT after global step 6, mid-way through the stage that trains the
    encoder (the head stage before it trained on cached per-token features)."""

    def build_callbacks(self, stage, index):
        import signal

        import keras

        class Send(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(np.asarray(self.model.optimizer.iterations)) == 6:
                    os.kill(os.getpid(), signal.SIGINT)

        return [Send()] if index == 1 else []


@pytest.mark.slow  # three tiny runs
def test_a_tokens_run_stopped_mid_stage_resumes_to_the_uninterrupted_weights(run, tmp_path):
    from tfft.recipe import load_recipe
    from tfft.trainer import RunStopped

    recipe = load_recipe(run.recipe, overrides=["train.checkpoint_every=2", "runtime.deterministic=True"])
    with pytest.raises(RunStopped, match="SIGINT: stopped at stage 2/2 'finetune'"):
        Interrupted(recipe, out_dir=str(tmp_path / "run"), verbose=0).run()
    resumed = Trainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    metrics = resumed.run()
    whole = Trainer(recipe, out_dir=str(tmp_path / "whole"), verbose=0)
    expected = whole.run()
    for a, b in zip(resumed.model.weights, whole.model.weights):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=0, atol=1e-6)
    assert metrics["entity_f1"] == expected["entity_f1"] and [s["steps_run"] for s in metrics["stages"]] == [3, 5]


@pytest.mark.slow  # the search trains five candidates
def test_auto_chooses_by_held_out_entity_f1_on_whole_sentences(run, tmp_path):
    from tfft.recipe import load_recipe

    recipe = load_recipe(run.recipe, overrides=["schedule.kind='auto'", "schedule.steps=40"])
    trainer = Trainer(recipe, out_dir=str(tmp_path / "auto"), verbose=0)
    search = trainer.run()["search"]
    assert "| held-out entity_f1 |" in trainer.search["table"].splitlines()[0]
    assert all(0.0 <= trial["accuracy"] <= 1.0 and trial["metric"] == "entity_f1" for trial in search["trials"])
    assert "label_smoothing" in [trial["name"] for trial in search["trials"]]
