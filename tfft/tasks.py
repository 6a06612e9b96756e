"""What a model predicts for each example, and how it is trained, scored and served.

A run's task comes from its modality (`Modality.task(config)`): one class per example
(`Classification`, every modality; with `data.multi_label`, any number of classes) or, for
text with `data.task="tokens"`, a tag per word (`TokenTagging` in
`tfft/modalities/text/tagging.py`). The trainer, `tfft evaluate`, `tfft export` and
`tfft predict` ask the task and never which one it is:

- `build_head`, `build_loss`, `build_metrics`: the `Trainer` hooks' defaults;
- `validation_scores`: what each validation adds to `val_loss` (Keras's epoch logs);
- `report`: the validation report (`metrics.json`) and the misclassified examples;
- `evaluation`, `evaluation_lines`: `tfft evaluate`'s report and what the CLI prints;
- `serving_outputs`, `rows`, `row_lines`: what an export returns, and `tfft predict`'s rows.

Example:
    >>> from tfft import tasks
    >>> task = tasks.of(recipe.data)
    >>> task.name, task.headline
    ('classify', 'accuracy')
"""

import importlib

import keras
import numpy as np

from tfft import evaluation
from tfft.errors import TfftError

# name -> "module:class", imported on first use.
TASKS = {
    "classify": "tfft.tasks:Classification",
    "tokens": "tfft.modalities.text.tagging:TokenTagging",
}
_loaded = {}


def get(name):
    """The `Task` called `name` (`"classify"` or `"tokens"`).

    Example:
        >>> get("tokens").headline
        'entity_f1'
    """
    if name not in _loaded:
        module, cls = TASKS[name].split(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)()
    return _loaded[name]


def of(config):
    """The task of a recipe's `data` section, as its modality says (`Modality.task`).

    Example:
        >>> of(load_recipe("recipes/contracts_ner.py").data).name
        'tokens'
    """
    from tfft import modalities

    return modalities.get(config.kind).task(config)


def of_outputs(outputs):
    """The task whose exports return `outputs` (the names of a serving signature's outputs).

    Example:
        >>> of_outputs(["probabilities", "top_classes", "top_names"]).name
        'classify'
    """
    for name in TASKS:
        if set(get(name).output_keys) <= set(outputs):
            return get(name)
    raise TfftError(f"No tfft task returns the outputs {sorted(outputs)}.")


def of_rows(rows):
    """The task whose `tfft predict` rows `rows` are (by their keys).

    Example:
        >>> of_rows([{"input": "a.txt", "entities": [], "cut_words": 0}]).name
        'tokens'
    """
    for name in TASKS:
        if set(get(name).row_keys) <= set(rows[0]):
            return get(name)
    raise TfftError(f"No tfft task predicts rows with the keys {sorted(rows[0])}.")


class Task:
    """The interface every task implements (see the module docstring).

    Attributes:
        name: the `data.task` value.
        headline: the report's key that sums up a run (what `schedule.kind="auto"` and
            `tfft tune` compare).
        output_keys: the serving signature's outputs (how `tfft predict` knows an export).
        row_keys: the keys of `tfft predict`'s rows.
    """

    name = None
    headline = None
    output_keys = ()
    row_keys = ()

    def build_head(self, features, config, num_classes):
        """The head's logits for the backbone's `features` (`config`: the `head` section)."""
        raise NotImplementedError

    def build_loss(self, datasets, config):
        """The loss on logits (`config`: the `train` section)."""
        raise NotImplementedError

    def build_metrics(self, datasets):
        """The metrics compiled with the model."""
        raise NotImplementedError

    def validation_scores(self, datasets):
        """None (the loss and accuracy only), or a function `(labels, logits) -> {name:
        value}` whose values each validation logs as `val_<name>`."""
        return None

    def report(self, labels, logits, datasets):
        """`(report, wrong)`: the validation report and `(index, truth, prediction)` of every
        misclassified example, as text."""
        raise NotImplementedError

    def summary(self, report):
        """One line for the CLI at a run's end."""
        raise NotImplementedError

    def evaluation(self, labels, logits, datasets, class_names, trained):
        """`tfft evaluate`'s report of the run's model on `datasets`' validation split:
        `class_names` are the run's, `trained` its `metrics.json`."""
        raise NotImplementedError

    def evaluation_lines(self, report):
        """What `tfft evaluate` prints of its report, line by line."""
        raise NotImplementedError

    def serving_outputs(self, model, class_names, k=5):
        """`features -> {name: tensor}`: what an export returns for the modality's
        features (`Serving.features`)."""
        raise NotImplementedError

    def rows(self, names, outputs, k):
        """`tfft predict`'s rows for one batch: the inputs' `names` and the export's outputs."""
        raise NotImplementedError

    def row_lines(self, rows, output_format, k):
        """`tfft predict`'s output lines for `rows` (`output_format`: table, csv or jsonl)."""
        raise NotImplementedError


class Classification(Task):
    """One class per example: a softmax over the classes, or with `data.multi_label` a
    sigmoid per class.

    Example:
        >>> head = Classification().build_head(features, recipe.head, num_classes=4)
    """

    name = "classify"
    headline = "accuracy"
    output_keys = ("probabilities", "top_classes", "top_names")
    row_keys = ("input", "top")

    def build_head(self, features, config, num_classes):
        """Pools 4D features (`head.pooling`), applies dropout and an optional hidden layer,
        and ends in a float32 `Dense(num_classes)` (logits)."""
        x = features
        if len(x.shape) == 4:
            pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
            if config.pooling not in pool:
                raise TfftError(f"head.pooling must be 'avg' or 'max'. Received: head.pooling={config.pooling!r}")
            x = pool[config.pooling](name="head_pool")(x)
        if config.hidden:
            x = keras.layers.Dense(config.hidden, activation="relu", name="head_hidden")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
        return keras.layers.Dense(num_classes, dtype="float32", name="head_logits")(x)

    def build_loss(self, datasets, config):
        """Cross-entropy on logits (a sigmoid per class when multi-label)."""
        smoothing = config.label_smoothing
        if datasets.multi_label:
            return keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
        if smoothing:
            return SmoothedSparseCrossentropy(datasets.num_classes, smoothing)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def build_metrics(self, datasets):
        if datasets.multi_label:
            # On logits, threshold 0 is probability 0.5. Per label, so not named "accuracy":
            # the report's accuracy is the exact-match ratio.
            return [keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0)]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def report(self, labels, logits, datasets):
        names = datasets.class_names
        if datasets.multi_label:
            report = evaluation.multilabel_report(labels, logits, names)
            truth, predicted = labels > 0.5, logits > 0.0
            wrong = [(i, _names(names, truth[i]), _names(names, predicted[i]))
                     for i in np.flatnonzero(np.any(truth != predicted, axis=1))]
            return report, wrong
        y_true, y_pred = labels.reshape(-1).astype("int64"), np.argmax(logits, axis=-1)
        report = evaluation.classification_report(y_true, y_pred, names)
        probabilities = evaluation.softmax(logits)
        report["ece"] = evaluation.calibration(y_true, probabilities)["ece"]
        # What `tfft evaluate` compares new data with, to report drift.
        report["reference"] = evaluation.prediction_profile(probabilities, names)
        wrong = [(i, names[y_true[i]], names[y_pred[i]]) for i in np.flatnonzero(y_true != y_pred)]
        return report, wrong

    def summary(self, report):
        return (f"validation accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f} "
                f"on {report['num_examples']} examples")

    def evaluation(self, labels, logits, datasets, class_names, trained):
        to_run = np.array([class_names.index(c) for c in datasets.class_names])
        y_true = to_run[labels.reshape(-1).astype("int64")]
        probabilities = evaluation.softmax(logits)
        report = evaluation.classification_report(y_true, probabilities.argmax(axis=-1), class_names)
        calibration = evaluation.calibration(y_true, probabilities)
        report["ece"] = calibration["ece"]
        report["reliability"] = calibration["bins"]
        current = evaluation.prediction_profile(probabilities, class_names)
        report["drift"] = (evaluation.drift(trained["reference"], current) if "reference" in trained else
                           dict(current=current, note="the run's metrics.json holds no validation reference"))
        return report

    def evaluation_lines(self, report):
        lines = per_class_table(report)
        lines.append(f"accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}, ECE {report['ece']:.4f} "
                     f"on {report['num_examples']} examples")
        return lines + drift_lines(report["drift"])

    def serving_outputs(self, model, class_names, k=5):
        """`{probabilities, top_classes, top_names}` over the model's logits."""
        from tfft.export import output_function

        return output_function(model, class_names, k)

    def rows(self, names, outputs, k):
        """`{"input": name, "top": [(class_name, probability), ...]}` per input."""
        probabilities = np.asarray(outputs["probabilities"])
        labels = [[n.decode("utf-8") for n in row] for row in np.asarray(outputs["top_names"])]
        return [dict(input=name, top=[(label[j], float(p[top[j]])) for j in range(min(k, len(top)))])
                for name, p, top, label in zip(names, probabilities, np.asarray(outputs["top_classes"]), labels)]

    def row_lines(self, rows, output_format, k):
        import csv
        import io
        import json

        if output_format == "jsonl":
            return [json.dumps(dict(input=row["input"], top=[dict(label=c, probability=p) for c, p in row["top"]]))
                    for row in rows]
        if output_format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(["input"] + [f"{what}_{i}" for i in range(1, k + 1) for what in ("label", "probability")])
            for row in rows:
                writer.writerow([row["input"]] + [v for c, p in row["top"] for v in (c, f"{p:.6f}")])
            return buffer.getvalue().splitlines()
        width = max(len(row["input"]) for row in rows)
        return [f"{row['input']:<{width}}  " + "  ".join(f"{c} {p:.4f}" for c, p in row["top"]) for row in rows]


def per_class_table(report, key="per_class", label="class"):
    """The per-class (or per-entity, `key="per_entity"`) precision, recall, F1 and support
    of a report as aligned text lines, with the macro average last.

    Args:
        report: a `metrics.json` report.
        key: the report's per-row table.
        label: the first column's heading.

    Example:
        >>> print("\n".join(per_class_table(report)))
    """
    width = max([len(label)] + [len(n) for n in report[key]])
    lines = [f"{label:<{width}}  precision  recall     f1  support"]
    for name, row in report[key].items():
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:5.4f}  "
                     f"{row['support']:7d}")
    total = report.get("num_entities", report["num_examples"]) if key == "per_entity" else report["num_examples"]
    lines.append(f"{'macro':<{width}}  {report['macro_precision']:9.4f}  {report['macro_recall']:6.4f}  "
                 f"{report['macro_f1']:5.4f}  {total:7d}")
    return lines


def drift_lines(drift):
    """The drift line of `tfft evaluate` (none when the run kept no reference).

    Example:
        >>> drift_lines(report["drift"])
        ["drift from the run's validation: class prior shift 0.083, ..."]
    """
    if "class_prior_shift" not in drift:
        return []
    return [f"drift from the run's validation: class prior shift {drift['class_prior_shift']:.3f}, "
            f"mean confidence {drift['mean_confidence_change']:+.3f}, "
            f"low-confidence share {drift['low_confidence_share_change']:+.3f}"]


def _names(class_names, flags):
    return ", ".join(name for name, flag in zip(class_names, flags) if flag) or "(none)"


class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on logits with label smoothing, for integer labels."""

    def __init__(self, num_classes, smoothing, name="smoothed_crossentropy"):
        super().__init__(name=name)
        self.num_classes = num_classes
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        one_hot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32"), self.num_classes)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, from_logits=True, label_smoothing=self.smoothing)
