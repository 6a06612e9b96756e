import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfft.errors import TfftError
from tfft.evaluation import classification_report
from tfft.evaluation import confusion_matrix
from tfft.evaluation import confusion_matrix_figure
from tfft.evaluation import predict_labels
from tfft.evaluation import write_json

# Class 2 is never predicted; hand-computed confusion matrix (rows true, columns predicted):
#   [[1, 1, 0],
#    [1, 2, 0],
#    [2, 0, 0]]
Y_TRUE = [0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 0, 0, 0]
NAMES = ["cat", "dog", "fox"]


def test_confusion_matrix_rows_true_columns_predicted():
    cm = confusion_matrix(Y_TRUE, Y_PRED, num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [2, 0, 0]]
    assert np.issubdtype(cm.dtype, np.integer)


def test_confusion_matrix_accepts_column_vectors_and_integral_floats():
    cm = confusion_matrix(np.array([[0.0], [1.0]]), np.array([[1], [1]]), num_classes=2)
    assert cm.tolist() == [[0, 1], [0, 1]]


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(TfftError, match=r"outside \[0, 3\).*\[3\]"):
        confusion_matrix([0, 3], [0, 1], num_classes=3)
    with pytest.raises(TfftError, match="same length"):
        confusion_matrix([0, 1, 2], [0, 1], num_classes=3)
    with pytest.raises(TfftError, match="integer"):
        confusion_matrix([0.5], [0], num_classes=3)


def test_classification_report_matches_hand_computation():
    report = classification_report(Y_TRUE, Y_PRED, NAMES)
    assert report["accuracy"] == pytest.approx(3 / 7)
    assert report["num_examples"] == 7
    cat, dog, fox = (report["per_class"][name] for name in NAMES)
    assert cat == pytest.approx({"precision": 1 / 4, "recall": 1 / 2, "f1": 1 / 3, "support": 2})
    assert dog == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    # Never predicted: precision, recall and F1 are zero divisions reported as 0.0.
    assert fox == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["macro_precision"] == pytest.approx(11 / 36)
    assert report["macro_recall"] == pytest.approx(7 / 18)
    assert report["macro_f1"] == pytest.approx(1 / 3)
    assert report["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [2, 0, 0]]
    assert report["class_names"] == NAMES


def test_classification_report_class_without_examples_counts_in_macro_average():
    report = classification_report([0, 0], [0, 0], ["a", "b"])
    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == pytest.approx(0.5)
    empty = classification_report([], [], ["a", "b"])
    assert empty["accuracy"] == 0.0 and empty["num_examples"] == 0


def test_classification_report_rejects_duplicate_names():
    with pytest.raises(TfftError, match="unique"):
        classification_report([0], [0], ["a", "a"])


def test_report_json_round_trip_uses_plain_types(tmp_path):
    report = classification_report(np.array(Y_TRUE), np.array(Y_PRED), NAMES)
    json.dumps(report)  # no numpy types left: the standard encoder accepts it as is
    path = tmp_path / "eval" / "metrics.json"
    write_json(path, report)
    with open(path, encoding="utf-8") as file:
        text = file.read()
    assert json.loads(text) == report
    assert text.startswith('{\n  "accuracy"')
    assert os.listdir(path.parent) == ["metrics.json"]


def test_write_json_converts_numpy_and_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "state.json"
    write_json(path, {"step": np.int64(3), "values": np.arange(2, dtype=np.float32)})
    assert json.loads(path.read_text()) == {"step": 3, "values": [0.0, 1.0]}
    with pytest.raises(TypeError):
        write_json(path, {"step": object()})
    assert json.loads(path.read_text())["step"] == 3
    assert os.listdir(tmp_path) == ["state.json"]


def test_confusion_matrix_figure_is_a_readable_rgb_image():
    cm = confusion_matrix(Y_TRUE, Y_PRED, num_classes=3)
    image = confusion_matrix_figure(cm, NAMES, "stage head")
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 300 and image.shape[1] >= 300
    # Not blank: white background, dark text and saturated blue cells.
    assert (image == 255).all(axis=-1).mean() > 0.2
    assert (image.max(axis=-1) < 80).any()
    blue = (image[..., 2].astype(int) - image[..., 0].astype(int)) > 80
    assert blue.sum() > 1000
    other = confusion_matrix_figure(np.eye(3, dtype=int) * 4, NAMES, "stage head")
    assert other.shape != image.shape or not np.array_equal(other, image)


def test_confusion_matrix_figure_rejects_mismatched_names():
    with pytest.raises(TfftError, match="one row per class name"):
        confusion_matrix_figure(np.zeros((3, 3)), ["a", "b"], "x")


def _tiny_classifier(num_outputs=3):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(num_outputs)])


def test_predict_labels_keeps_dataset_order_and_reads_one_hot_labels():
    model = _tiny_classifier()
    x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    expected_logits = keras.ops.convert_to_numpy(model(x, training=False))

    sparse = tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)
    y_true, y_pred, logits = predict_labels(model, sparse)
    np.testing.assert_array_equal(y_true, labels)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y_pred, np.argmax(expected_logits, axis=-1))

    one_hot = tf.data.Dataset.from_tensor_slices(
        (x, np.eye(3, dtype="float32")[labels], np.ones(10, dtype="float32"))
    ).batch(3)
    y_true, y_pred_again, _ = predict_labels(model, one_hot)
    np.testing.assert_array_equal(y_true, labels)
    np.testing.assert_array_equal(y_pred_again, y_pred)


def test_predict_labels_rejects_single_output_and_empty_data():
    x = np.zeros((2, 4), dtype="float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1]))).batch(2)
    with pytest.raises(TfftError, match="one score per class"):
        predict_labels(_tiny_classifier(num_outputs=1), dataset)
    with pytest.raises(TfftError, match="no batches"):
        predict_labels(_tiny_classifier(), dataset.take(0))
