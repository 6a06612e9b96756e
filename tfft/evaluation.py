"""Classification metrics, the confusion matrix image and the JSON files a run leaves behind.

Everything here is plain numpy so that `metrics.json` can be recomputed from saved
predictions without TensorFlow; only `predict_labels` touches a model.
"""

import json
import os
import secrets
import warnings

import numpy as np

from tfft import multi_worker
from tfft.errors import TfftError


def _as_label_vector(labels, name):
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise TfftError(
            f"`{name}` must be a vector of integer class indices. "
            f"Received: {name} with shape {array.shape}"
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise TfftError(
                f"`{name}` must hold integer class indices. "
                f"Received: {name}[:5]={array[:5].tolist()}"
            )
    return array.astype(np.int64)


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts how often each true class was predicted as each class.

    Args:
        y_true: integer class indices of the examples, shape `[n]` (or `[n, 1]`).
        y_pred: predicted class indices, same shape as `y_true`.
        num_classes: number of classes; every label must lie in `[0, num_classes)`.

    Returns:
        An int64 array of shape `[num_classes, num_classes]`: rows are true classes,
        columns predicted classes.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0], num_classes=2).tolist()
        [[1, 0], [1, 1]]
    """
    num_classes = int(num_classes)
    if num_classes < 1:
        raise TfftError(f"`num_classes` must be at least 1. Received: num_classes={num_classes}")
    y_true = _as_label_vector(y_true, "y_true")
    y_pred = _as_label_vector(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise TfftError(
            "`y_true` and `y_pred` must have the same length. "
            f"Received: {y_true.shape[0]} true labels and {y_pred.shape[0]} predictions"
        )
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        outside = labels[(labels < 0) | (labels >= num_classes)]
        if outside.size:
            raise TfftError(
                f"`{name}` holds labels outside [0, {num_classes}). "
                f"Received: {name} values {sorted(set(outside.tolist()))[:10]}"
            )
    flat = y_true * num_classes + y_pred
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(numerator, denominator):
    return float(numerator) / float(denominator) if denominator else 0.0


def _divide(numerator, denominator):
    """Element-wise division with 0 where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, "float64"), np.asarray(denominator, "float64")
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def classification_report(y_true, y_pred, class_names):
    """Accuracy, per-class and macro precision, recall and F1 as a JSON-ready dict.

    A ratio whose denominator is zero is reported as 0.0: precision of a class that is
    never predicted, recall of a class with no examples, F1 when precision and recall are
    both 0, and accuracy of an empty set. Macro averages are the unweighted means over all
    `class_names`, including classes with no examples.

    Args:
        y_true: integer class indices of the examples, shape `[n]`.
        y_pred: predicted class indices, shape `[n]`.
        class_names: names of the classes; label `i` is `class_names[i]`.

    Returns:
        A dict with keys `accuracy`, `macro_precision`, `macro_recall`, `macro_f1`,
        `num_examples`, `per_class` (`{name: {precision, recall, f1, support}}`),
        `confusion_matrix` (nested lists, rows true) and `class_names`. All values are
        plain Python `int`, `float`, `str` or lists of them.

    Example:
        >>> report = classification_report([0, 1, 1], [0, 1, 0], ["cat", "dog"])
        >>> report["accuracy"], report["per_class"]["dog"]["recall"]
        (0.6666666666666666, 0.5)
    """
    class_names = [str(name) for name in class_names]
    if len(set(class_names)) != len(class_names):
        raise TfftError(f"`class_names` must be unique. Received: class_names={class_names}")
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    true_counts = cm.sum(axis=1)
    predicted_counts = cm.sum(axis=0)
    per_class = {}
    for index, name in enumerate(class_names):
        correct = cm[index, index]
        precision = _safe_divide(correct, predicted_counts[index])
        recall = _safe_divide(correct, true_counts[index])
        f1 = _safe_divide(2.0 * precision * recall, precision + recall)
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(true_counts[index]),
        }
    num_examples = int(cm.sum())
    return {
        "accuracy": _safe_divide(np.trace(cm), num_examples),
        "macro_precision": float(np.mean([m["precision"] for m in per_class.values()])),
        "macro_recall": float(np.mean([m["recall"] for m in per_class.values()])),
        "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])),
        "num_examples": num_examples,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "class_names": class_names,
    }


def predict_outputs(model, dataset):
    """Run a model once over a batched `(x, y)` dataset; return `(labels, outputs)` arrays.

    Labels come back as the dataset holds them (`[n]` indices or `[n, k]` multi-hot);
    a third element of the dataset (sample weights) is ignored.

    Example:
        >>> labels, logits = predict_outputs(model, datasets.validation)
    """
    label_batches = []
    for element in dataset:
        if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
            raise TfftError(
                "`dataset` must yield `(x, y)` or `(x, y, sample_weight)` batches. "
                f"Received: an element of type {type(element).__name__}"
            )
        label_batches.append(np.asarray(element[1]))
    if not label_batches:
        raise TfftError("`dataset` yielded no batches; cannot predict on an empty dataset.")
    if multi_worker.in_multi_worker_mode(model.distribute_strategy):
        outputs = multi_worker.predict(model, dataset)  # every worker scores all of it
    else:
        # `predict`, not `predict_on_batch` per batch: under MirroredStrategy the latter returns
        # every replica's outputs for the whole batch (twice as many rows on two replicas).
        # There, a distributed dataset has no known length, and the end of this finite one
        # draws Keras's "ran out of data" warning, which is meant for a short training stream.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            outputs = np.asarray(model.predict(dataset, verbose=0))
    if outputs.ndim < 2 or outputs.shape[-1] < 2:
        raise TfftError(
            "The model must output one score per class, shape [batch, num_classes] "
            "(or [batch, tokens, num_classes] for tags) with num_classes >= 2 (use a "
            f"`Dense(num_classes)` head). Received: output shape {outputs.shape}"
        )
    return np.concatenate(label_batches, axis=0), outputs


def predict_labels(model, dataset):
    """Runs a classifier once over a batched dataset and collects labels and logits.

    Labels may be sparse (`[batch]` or `[batch, 1]`) or one-hot (`[batch, num_classes]`);
    a third element of the dataset (sample weights) is ignored. The model must output one
    score per class, `[batch, num_classes]` with `num_classes >= 2`; the predicted label is
    the arg-max.

    Args:
        model: a Keras classifier.
        dataset: a finite, batched `tf.data.Dataset` (or any iterable) of `(x, y)` or
            `(x, y, sample_weight)`.

    Returns:
        A tuple `(y_true, y_pred, logits)`: int64 arrays of shape `[n]` and the float array
        of model outputs, shape `[n, num_classes]`, in dataset order.

    Example:
        >>> y_true, y_pred, logits = predict_labels(model, datasets.validation)
        >>> report = classification_report(y_true, y_pred, datasets.class_names)
    """
    y, logits = predict_outputs(model, dataset)
    if y.ndim == 2 and y.shape[1] == logits.shape[1] and y.shape[1] > 1:
        y = np.argmax(y, axis=-1)
    y_true = _as_label_vector(y, "y")
    y_pred = np.argmax(logits, axis=-1).astype(np.int64)
    return y_true, y_pred, logits


def multilabel_report(y_true, logits, class_names, threshold=0.5):
    """Report for multi-label predictions: a class is predicted when its sigmoid > threshold.

    Args:
        y_true: multi-hot `[n, num_classes]`.
        logits: model outputs `[n, num_classes]`.
        class_names: names of the classes.
        threshold: probability above which a class counts as predicted.

    Returns:
        A dict with `accuracy` (exact-match ratio), `macro_precision`, `macro_recall`,
        `macro_f1`, `micro_f1`, `num_examples`, `per_class` and `class_names`; plain types.

    Example:
        >>> multilabel_report([[1, 0], [1, 1]], [[3.0, -2.0], [1.0, -1.0]], ["a", "b"])["accuracy"]
        0.5
    """
    truth = np.asarray(y_true) > 0.5
    predicted = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype="float64"))) > threshold
    if truth.shape != predicted.shape or truth.shape[1] != len(class_names):
        raise TfftError(f"Labels {truth.shape}, outputs {predicted.shape} and {len(class_names)} class names disagree.")
    tp = np.sum(truth & predicted, axis=0)
    fp = np.sum(~truth & predicted, axis=0)
    fn = np.sum(truth & ~predicted, axis=0)
    precision = _divide(tp, tp + fp)
    recall = _divide(tp, tp + fn)
    f1 = _divide(2 * precision * recall, precision + recall)
    micro = _safe_divide(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())
    return {
        "accuracy": float(np.mean(np.all(truth == predicted, axis=1))),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
        "micro_f1": float(micro),
        "num_examples": int(truth.shape[0]),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, truth.sum(axis=0))
        },
        "class_names": list(class_names),
        "threshold": threshold,
    }


def confusion_matrix_figure(cm, class_names, title="Confusion matrix"):
    """Renders a confusion matrix as an RGB heat-map image.

    A cell's colour is its share of the true class (its row), so rare classes stay
    readable next to frequent ones; the number written in it is the raw count. Counts are
    written for up to 40 classes; beyond that the cells would be too small to read.

    Args:
        cm: square array of counts, rows true classes, columns predicted classes.
        class_names: names of the classes, one per row.
        title: text above the plot.

    Returns:
        A uint8 array of shape `[height, width, 3]`, ready for `tf.summary.image` once a
        batch axis is added.

    Example:
        >>> image = confusion_matrix_figure([[5, 1], [0, 4]], ["cat", "dog"], "stage 1")
        >>> image.dtype, image.shape[-1]
        (dtype('uint8'), 3)
    """
    # Imported here: `import tfft` should not pay for matplotlib unless a figure is drawn.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    class_names = [str(name) for name in class_names]
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise TfftError(
            "`cm` must be a square matrix with one row per class name. "
            f"Received: cm with shape {cm.shape} and {len(class_names)} class names"
        )
    num_classes = len(class_names)
    row_totals = cm.sum(axis=1, keepdims=True)
    shares = np.divide(cm, row_totals, out=np.zeros(cm.shape, dtype=float), where=row_totals > 0)

    side = min(4.0 + 0.45 * num_classes, 24.0)
    figure = Figure(figsize=(side + 1.0, side), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    heat_map = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    colorbar = figure.colorbar(heat_map, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("share of true class")

    font_size = max(5, 11 - num_classes // 5)
    axes.set_xticks(range(num_classes))
    axes.set_yticks(range(num_classes))
    axes.set_xticklabels(class_names, rotation=45, ha="right", fontsize=font_size)
    axes.set_yticklabels(class_names, fontsize=font_size)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title(title)
    if num_classes <= 40:
        for row in range(num_classes):
            for column in range(num_classes):
                colour = "white" if shares[row, column] > 0.5 else "black"
                axes.text(
                    column,
                    row,
                    f"{int(cm[row, column])}",
                    ha="center",
                    va="center",
                    color=colour,
                    fontsize=font_size,
                )
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _finite(value):
    """`value` with every NaN or infinity replaced by None, for strict JSON."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def write_json(path, obj):
    """Writes `obj` as indented, strict JSON so that readers never see a half-written file.

    The text goes to a temporary file in the same directory, which then replaces `path`
    in one `os.replace`. Missing parent directories are created. numpy scalars and arrays
    are written as numbers and lists; NaN and infinities as `null` (JSON has no token for
    them, and strict parsers reject Python's `NaN`).

    Args:
        path: destination file.
        obj: a JSON-serialisable value.

    Example:
        >>> write_json("runs/mri/metrics.json", {"accuracy": 0.93})
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Serialise first so a value that is not JSON leaves no temporary file behind.
    text = json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False) + "\n"
    # Not `tempfile.mkstemp`: its files are private (0600) and `os.replace` would keep that.
    temp_path = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    )
    try:
        with open(temp_path, "x", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise


def softmax(logits):
    """Row-wise softmax of `[n, k]` logits, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def calibration(y_true, probabilities, bins=10):
    """Expected calibration error and its reliability table over `bins` equal-width
    confidence bins (Guo et al., 2017): `ece = sum_b |acc_b - conf_b| * n_b / n`.

    Example:
        >>> calibration([0, 1], [[0.9, 0.1], [0.6, 0.4]])["ece"]
        0.35
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true).reshape(-1)
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        accuracy = float(correct[members].mean()) if count else 0.0
        mean_confidence = float(confidence[members].mean()) if count else 0.0
        ece += abs(accuracy - mean_confidence) * count / max(len(y_true), 1)
        table.append(dict(low=float(edges[b]), high=float(edges[b + 1]), count=count, accuracy=accuracy,
                          confidence=mean_confidence))
    return dict(ece=float(ece), bins=table)


# A prediction below this top-class probability counts as low-confidence in drift reports.
LOW_CONFIDENCE = 0.5


def prediction_profile(probabilities, class_names):
    """What a set of predictions looks like without labels, to compare two data sets: the
    share of each predicted class, the mean top-class probability and the share of
    predictions below `LOW_CONFIDENCE`."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=-1)
    confidence = probabilities.max(axis=-1)
    n = max(len(predicted), 1)
    return dict(
        predicted_share={str(name): float(np.sum(predicted == i)) / n for i, name in enumerate(class_names)},
        mean_confidence=float(confidence.mean()) if len(confidence) else 0.0,
        low_confidence_share=float(np.mean(confidence < LOW_CONFIDENCE)) if len(confidence) else 0.0,
    )


def drift(reference, current):
    """How `current` predictions moved from `reference` (both `prediction_profile`s): the
    total variation distance between the predicted-class shares, and the changes of mean
    confidence and of the low-confidence share."""
    names = sorted(set(reference["predicted_share"]) | set(current["predicted_share"]))
    distance = 0.5 * sum(abs(reference["predicted_share"].get(n, 0.0) - current["predicted_share"].get(n, 0.0))
                         for n in names)
    return dict(
        class_prior_shift=float(distance),
        mean_confidence_change=current["mean_confidence"] - reference["mean_confidence"],
        low_confidence_share_change=current["low_confidence_share"] - reference["low_confidence_share"],
        reference=reference,
        current=current,
    )


def reliability_figure(bins, title="Reliability"):
    """A reliability diagram (accuracy per confidence bin against the diagonal) as RGB."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0, 5.0), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
    axes.bar(centres, [b["accuracy"] for b in bins], width=width * 0.9, color="tab:blue", label="accuracy")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-class probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
