"""`tfft export`: a SavedModel that takes encoded images and loads with TensorFlow alone,
and a TFLite model, both matching the trained model's probabilities."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from tfft.cli import main
from tfft.recipe import recipe_from_run
from tfft.testing import tflite_outputs, write_image_folder, write_recipe

pytestmark = pytest.mark.filterwarnings("ignore")

RECIPE = """
    from tfft.testing import TinyTrainer
    trainer = TinyTrainer
    backbone = dict(input_size=32)
    data = dict(path={data!r}, batch_size=8, augment={{}}, validation_split=0.25)
    schedule = dict(kind="two_phase", steps=8, lr=0.01, finetune_lr=0.003)
"""

# Run in a fresh interpreter that imports TensorFlow and nothing of tfft or keras-hub.
SERVE = """
import json, sys
import tensorflow as tf
files = json.loads(sys.stdin.read())
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(image_bytes=tf.constant([open(f, "rb").read() for f in files]))
print(json.dumps(dict(probabilities=out["probabilities"].numpy().tolist(), top=out["top_classes"].numpy().tolist(),
                      names=[[n.decode() for n in row] for row in out["top_names"].numpy()],
                      imported=sorted(m for m in sys.modules if m.split(".")[0] in ("tfft", "keras_hub")))))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_image_folder(root / "train", num_classes=3, per_class=12, size=32, seed=0)
    recipe = write_recipe(root / "tiny.py", RECIPE.format(data=str(root / "train")))
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def _validation_files(root):
    files = sorted(str(p) for p in (root / "train").rglob("*.png"))
    return files[::4]  # a sample of every class


def _reference(root, files):
    """The trained model.keras on the files, preprocessed as the run's pipeline does."""
    recipe = recipe_from_run(root / "run")
    backbone = recipe.trainer(recipe, dry_run=True, save=False).build_backbone()
    images = np.stack([tf.io.decode_png(tf.io.read_file(f), channels=3).numpy() for f in files]).astype("float32")
    model = keras.models.load_model(root / "run" / "model.keras")
    inputs = backbone.preprocess(images) if backbone.preprocess else images
    return images, tf.nn.softmax(model.predict(inputs, verbose=0)).numpy()


def test_saved_model_serves_image_bytes_with_tensorflow_alone(run):
    result = CliRunner().invoke(main, ["export", str(run / "run")])
    assert result.exit_code == 0, result.output
    path = run / "run" / "export" / "saved_model"
    class_names = json.loads((run / "run" / "metrics.json").read_text())["class_names"]
    assert (path / "labels.txt").read_text().splitlines() == class_names
    files = _validation_files(run)
    served = subprocess.run([sys.executable, "-c", SERVE, str(path)], input=json.dumps(files), capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert served.returncode == 0, served.stderr[-2000:]
    out = json.loads(served.stdout.strip().splitlines()[-1])
    assert out["imported"] == []
    _, expected = _reference(run, files)
    np.testing.assert_allclose(np.array(out["probabilities"]), expected, atol=1e-5)
    assert [row[0] for row in out["top"]] == expected.argmax(-1).tolist()
    assert [row[0] for row in out["names"]] == [class_names[i] for i in expected.argmax(-1)]


def test_saved_model_takes_jpeg_and_gif_as_well(run):
    path = run / "run" / "export" / "saved_model"
    if not path.exists():
        CliRunner().invoke(main, ["export", str(run / "run")])
    image = tf.io.decode_png(tf.io.read_file(_validation_files(run)[0]), channels=3)
    jpeg = tf.io.encode_jpeg(image).numpy()
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = serve(image_bytes=tf.constant([jpeg, tf.io.encode_png(image).numpy()]))
    assert out["probabilities"].shape == (2, 3)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)


def test_tflite_matches_the_trained_model(run):
    out = run / "lite" / "model.tflite"
    result = CliRunner().invoke(main, ["export", str(run / "run"), "--format", "tflite", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = _validation_files(run)
    images, expected = _reference(run, files)
    np.testing.assert_allclose(tflite_outputs(out, images), expected, atol=1e-3)
    assert (run / "lite" / "labels.txt").read_text().splitlines() == \
        json.loads((run / "run" / "metrics.json").read_text())["class_names"]


def test_export_errors_are_one_line(run, tmp_path):
    missing = CliRunner().invoke(main, ["export", str(tmp_path)])
    assert missing.exit_code == 2 and missing.output.strip().startswith(f"error: {tmp_path} holds no finished run")
    wrong = CliRunner().invoke(main, ["export", str(run / "run"), "--format", "onnx"])
    assert wrong.exit_code == 2 and "'onnx' is not one of 'saved_model', 'tflite'" in wrong.output


def test_predict_on_a_folder_agrees_with_evaluate(run):
    from tfft.evaluate_run import evaluate_run
    from tfft import evaluation

    report = evaluate_run(run / "run", run / "train", name="train")
    result = CliRunner().invoke(main, ["predict", str(run / "run"), str(run / "train"), "--format", "jsonl",
                                       "--top-k", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 36 and all(len(row["top"]) == 2 for row in rows)
    names = report["class_names"]
    truth = [names.index(os.path.basename(os.path.dirname(row["input"]))) for row in rows]
    guess = [names.index(row["top"][0]["label"]) for row in rows]
    assert evaluation.confusion_matrix(truth, guess, 3).tolist() == report["confusion_matrix"]


def test_predict_from_an_export_matches_the_run_and_writes_csv(run):
    path = run / "run" / "export" / "saved_model"
    if not path.exists():
        CliRunner().invoke(main, ["export", str(run / "run")])
    files = _validation_files(run)[:3]
    from_run = CliRunner().invoke(main, ["predict", str(run / "run")] + files + ["--format", "csv"])
    from_export = CliRunner().invoke(main, ["predict", str(path)] + files + ["--format", "csv"])
    assert from_run.exit_code == 0 and from_export.exit_code == 0, from_run.output + from_export.output
    lines = from_run.output.splitlines()
    assert lines[0] == "input,label_1,probability_1,label_2,probability_2,label_3,probability_3"
    assert [l.split(",")[1] for l in lines[1:]] == [l.split(",")[1] for l in from_export.output.splitlines()[1:]]
    run_p = [float(l.split(",")[2]) for l in lines[1:]]
    export_p = [float(l.split(",")[2]) for l in from_export.output.splitlines()[1:]]
    np.testing.assert_allclose(run_p, export_p, atol=1e-5)
    table = CliRunner().invoke(main, ["predict", str(run / "run"), files[0]])
    assert table.output.split()[0] == files[0] and len(table.output.split()) == 7
    missing = CliRunner().invoke(main, ["predict", str(run / "run"), str(run / "nope.png")])
    assert missing.exit_code == 2 and missing.output.strip() == f"error: Input not found: {run / 'nope.png'}"
