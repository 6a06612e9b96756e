"""`tfft evaluate`: a finished run scored on labelled data it never saw, through its own
pipeline; metrics, figures, calibration and drift in RUN/evaluations/NAME/."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from tfft import evaluation
from tfft.cli import main
from tfft.errors import DataError
from tfft.evaluate_run import evaluate_run
from tfft.testing import write_image_folder, write_recipe

pytestmark = pytest.mark.filterwarnings("ignore")

RECIPE = """
    from tfft.testing import TinyTrainer
    trainer = TinyTrainer
    backbone = dict(input_size=32)
    data = dict(path={data!r}, batch_size=8, augment={{}}, validation_split=0.25)
    schedule = dict(kind="two_phase", steps=8, lr=0.01, finetune_lr=0.003)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    write_image_folder(root / "train", num_classes=3, per_class=12, size=32, seed=0)
    write_image_folder(root / "test", num_classes=3, per_class=6, size=32, seed=1)
    recipe = write_recipe(root / "tiny.py", RECIPE.format(data=str(root / "train")))
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def _predict_by_hand(run_dir, folder, class_names):
    """Decode the PNGs and run model.keras on them, without tfft's pipeline."""
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    truth, images = [], []
    for label in sorted(os.listdir(folder)):
        for file in sorted(os.listdir(os.path.join(folder, label))):
            images.append(tf.io.decode_png(tf.io.read_file(os.path.join(folder, label, file)), channels=3).numpy())
            truth.append(class_names.index(label))
    logits = model.predict(np.asarray(images, "float32"), verbose=0)
    return np.asarray(truth), logits


def test_evaluate_writes_metrics_figures_and_tensorboard(run):
    report = evaluate_run(run / "run", run / "test")
    out = run / "run" / "evaluations" / "test"
    saved = json.loads((out / "metrics.json").read_text())  # strict JSON
    assert saved["num_examples"] == 18 and saved["split"] == "evaluation"
    truth, logits = _predict_by_hand(run / "run", run / "test", saved["class_names"])
    expected = evaluation.confusion_matrix(truth, logits.argmax(-1), 3)
    assert saved["confusion_matrix"] == expected.tolist()
    assert saved["accuracy"] == pytest.approx(float(np.mean(truth == logits.argmax(-1))))
    assert saved["ece"] == pytest.approx(evaluation.calibration(truth, evaluation.softmax(logits))["ece"], abs=1e-6)
    assert sum(b["count"] for b in saved["reliability"]) == 18
    for png in ("confusion_matrix.png", "reliability.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(run / "run" / "tensorboard" / "evaluation-test")
    assert report["accuracy"] == saved["accuracy"]


def test_drift_compares_with_the_runs_validation_predictions(run):
    report = evaluate_run(run / "run", run / "test", name="drift")
    trained = json.loads((run / "run" / "metrics.json").read_text())
    reference, current = trained["reference"], report["drift"]["current"]
    assert report["drift"]["reference"] == reference
    expected = 0.5 * sum(abs(reference["predicted_share"][c] - current["predicted_share"][c]) for c in reference["predicted_share"])
    assert report["drift"]["class_prior_shift"] == pytest.approx(expected)
    assert report["drift"]["mean_confidence_change"] == pytest.approx(current["mean_confidence"] - reference["mean_confidence"])
    assert sum(current["predicted_share"].values()) == pytest.approx(1.0)


def test_drift_of_known_profiles():
    reference = dict(predicted_share=dict(a=0.5, b=0.5), mean_confidence=0.9, low_confidence_share=0.0)
    current = dict(predicted_share=dict(a=0.9, b=0.1), mean_confidence=0.7, low_confidence_share=0.25)
    drift = evaluation.drift(reference, current)
    assert drift["class_prior_shift"] == pytest.approx(0.4)
    assert drift["mean_confidence_change"] == pytest.approx(-0.2)
    assert drift["low_confidence_share_change"] == pytest.approx(0.25)


def test_a_subset_of_the_classes_keeps_the_runs_indices(run):
    subset = run / "subset"
    for name in ("class1", "class2"):  # the data's own indices would be 0 and 1
        shutil.copytree(run / "test" / name, subset / name)
    report = evaluate_run(run / "run", subset)
    assert report["class_names"] == ["class0", "class1", "class2"]
    rows = report["confusion_matrix"]
    assert sum(rows[0]) == 0 and sum(rows[1]) == 6 and sum(rows[2]) == 6
    truth, logits = _predict_by_hand(run / "run", subset, report["class_names"])
    assert rows == evaluation.confusion_matrix(truth, logits.argmax(-1), 3).tolist()


def test_unknown_labels_are_named(run):
    extra = run / "extra"
    shutil.copytree(run / "test", extra)
    shutil.copytree(run / "test" / "class0", extra / "zebra")
    with pytest.raises(DataError, match=r"labels the run was not trained on: \['zebra'\]"):
        evaluate_run(run / "run", extra)
    assert not (run / "run" / "evaluations" / "extra").exists()


def test_cli_prints_the_table_and_errors_in_one_line(run):
    result = CliRunner().invoke(main, ["evaluate", str(run / "run"), "--data", str(run / "test"), "--name", "cli"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert "drift from the run's validation: class prior shift" in result.output
    missing = CliRunner().invoke(main, ["evaluate", str(run / "run"), "--data", str(run / "nowhere")])
    assert missing.exit_code == 2 and missing.output.strip() == f"error: Evaluation data not found: {run / 'nowhere'}"
    unfinished = CliRunner().invoke(main, ["evaluate", str(run / "test"), "--data", str(run / "test")])
    assert unfinished.exit_code == 2 and "holds no finished run" in unfinished.output


def test_a_csv_manifest_scores_as_its_folder_does(run):
    rows = ["path,label"] + [f"{label}/{file},{label}" for label in sorted(os.listdir(run / "test"))
                             for file in sorted(os.listdir(run / "test" / label))]
    (run / "test" / "test.csv").write_text("\n".join(rows) + "\n")
    folder = evaluate_run(run / "run", run / "test", name="folder")
    manifest = evaluate_run(run / "run", run / "test" / "test.csv", name="manifest")
    assert manifest["num_examples"] == 18 and manifest["confusion_matrix"] == folder["confusion_matrix"]
    saved = json.loads((run / "run" / "evaluations" / "manifest" / "metrics.json").read_text())
    assert saved["data"] == str(run / "test" / "test.csv")


@pytest.mark.slow  # trains a run on the TFDS split, then evaluates it twice
def test_a_tfds_split_is_scored_through_the_folders_it_is_written_as(run, tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setenv("TFFT_CACHE", str(tmp_path / "cache"))
    with tfds.testing.mock_data(num_examples=24):
        with pytest.raises(DataError, match=r"tfds:tf_flowers:train holds labels the run was not trained on: \["):
            evaluate_run(run / "run", "tfds:tf_flowers:train")
        body = RECIPE.replace("path={data!r}", "tfds='tf_flowers', tfds_split=['train', None]").format()
        recipe = write_recipe(tmp_path / "flowers.py", body)
        result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "flowers")])
        assert result.exit_code == 0, result.output
        report = evaluate_run(tmp_path / "flowers", "tfds:tf_flowers:train")
    folder = tmp_path / "cache" / "tfds" / "tf_flowers" / "3.0.1" / "train"
    assert report["num_examples"] == 24 and (tmp_path / "flowers" / "evaluations" / "tfds_tf_flowers_train").is_dir()
    assert evaluate_run(tmp_path / "flowers", folder)["confusion_matrix"] == report["confusion_matrix"]


def test_a_tfds_split_of_texts_goes_whole_to_the_validation_split():
    from tfft.evaluate_run import _data_config
    from tfft.recipe import Recipe

    config = Recipe().with_overrides(["data.kind='text'", "data.manifest='tickets.csv'"]).data
    data = _data_config(config, "tfds:imdb_reviews:test", None)
    assert (data.tfds, data.tfds_split, data.manifest, data.validation_path) == ("imdb_reviews", ["test", "test"], None, None)
    assert _data_config(config, "tfds:imdb_reviews", 8).tfds_split == ["test", "test"]
    for given, name, split in [("tfds:mnist:test[:50%]", "mnist", "test[:50%]"), ("tfds:mnist:3.0.1:train", "mnist:3.0.1", "train"),
                               ("tfds:glue/sst2:2.0.0", "glue/sst2:2.0.0", "test")]:
        assert (_data_config(config, given, None).tfds, _data_config(config, given, None).tfds_split) == (name, [split, split])
    with pytest.raises(DataError, match="A TFDS split is given as tfds:NAME:SPLIT"):
        _data_config(config, "tfds:", None)
