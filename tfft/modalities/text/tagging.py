"""Token classification (`data.task="tokens"`): a tag per word, scored entity by entity.

The head puts a `Dense(num_tags)` on every token vector of the encoder's sequence output.
Labels are `[sequence_length]` tag indices on each word's first piece and -1 elsewhere
(its other pieces, the special and padding tokens), which the loss and the accuracy leave
out. The report reads the entities off the tags (`tfft.modalities.text.entities`) and
scores them as conlleval does: precision, recall and F1 over the entities (an entity is
right only with its type and both its ends right), per entity type, micro and macro. A
word past `sequence_length` pieces is not seen by the model: it counts as tagged `O`, so
its entities count as missed.

Example:
    >>> task = TokenTagging()
    >>> report, wrong = task.report(labels, logits, datasets)
    >>> report["entity_f1"], report["per_entity"]["DATE"]["recall"]
"""

import json

import keras
import numpy as np

from tfft import evaluation
from tfft.modalities.text.entities import OUTSIDE, describe, entity_report, spans, types_of
from tfft.tasks import Task, drift_lines, per_class_table


@keras.saving.register_keras_serializable(package="tfft")
class TokenCrossentropy(keras.losses.Loss):
    """Cross-entropy of tag logits `[batch, tokens, tags]` against labels `[batch, tokens]`,
    averaged over the tokens whose label is not -1.

    Args:
        num_classes: the number of tags.
        label_smoothing: label smoothing of each token's cross-entropy.

    Example:
        >>> TokenCrossentropy(3)(np.array([[0, -1]]), np.zeros((1, 2, 3)))   # log(3)
    """

    def __init__(self, num_classes, label_smoothing=0.0, name="token_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(y_true, "int32")
        mask = keras.ops.cast(keras.ops.greater_equal(labels, 0), y_pred.dtype)
        safe = keras.ops.maximum(labels, 0)
        if self.label_smoothing:
            per_token = keras.losses.categorical_crossentropy(
                keras.ops.one_hot(safe, self.num_classes), y_pred, from_logits=True,
                label_smoothing=self.label_smoothing)
        else:
            per_token = keras.losses.sparse_categorical_crossentropy(safe, y_pred, from_logits=True)
        # Keras averages the returned values over the batch: scaled so that the average is
        # the mean over the batch's tagged tokens, not over its sentences.
        batch = keras.ops.cast(keras.ops.shape(mask)[0], y_pred.dtype)
        return keras.ops.sum(per_token * mask, axis=-1) * batch / keras.ops.maximum(keras.ops.sum(mask), 1.0)

    def get_config(self):
        return dict(super().get_config(), num_classes=self.num_classes, label_smoothing=self.label_smoothing)


@keras.saving.register_keras_serializable(package="tfft")
class TokenAccuracy(keras.metrics.Metric):
    """The share of tagged tokens (label not -1) whose arg-max tag is right.

    Example:
        >>> metric = TokenAccuracy()
        >>> metric.update_state(np.array([[1, -1]]), np.array([[[0.0, 2.0], [5.0, 0.0]]]))
        >>> float(metric.result())
        1.0
    """

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = keras.ops.cast(y_true, "int32")
        tagged = keras.ops.greater_equal(labels, 0)
        right = keras.ops.logical_and(tagged, keras.ops.equal(keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32"),
                                                              labels))
        self.correct.assign_add(keras.ops.sum(keras.ops.cast(right, "float32")))
        self.total.assign_add(keras.ops.sum(keras.ops.cast(tagged, "float32")))

    def result(self):
        return keras.ops.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


def sentence_tags(labels, logits, sentences, class_names):
    """Per sentence, the true tags and the predicted ones of all its words (a word past the
    sequence predicted `O`), and the arg-max probability of each seen word.

    Args:
        labels: `[n, sequence_length]` tag indices of first pieces, -1 elsewhere.
        logits: `[n, sequence_length, tags]`.
        sentences: `(text, tag indices)` per sentence (`Datasets.items["validation"]`).
        class_names: the tags.

    Returns:
        `(true, predicted, probabilities)`: two lists of tag-name lists, and `[seen words,
        tags]` softmax rows of every seen word, sentence after sentence.

    Example:
        >>> true, predicted, _ = sentence_tags(labels, logits, datasets.items["validation"], datasets.class_names)
        >>> entity_report(true, predicted)["f1"]
    """
    outside = list(class_names).index(OUTSIDE)
    true, predicted, rows = [], [], []
    for i, (_, tags) in enumerate(sentences):
        seen = labels[i] >= 0
        probabilities = evaluation.softmax(logits[i][seen])
        guessed = list(probabilities.argmax(axis=-1)) + [outside] * (len(tags) - int(seen.sum()))
        true.append([class_names[t] for t in tags])
        predicted.append([class_names[t] for t in guessed])
        rows.append(probabilities)
    width = len(class_names)
    return true, predicted, np.concatenate(rows) if rows else np.zeros((0, width))


class TokenTagging(Task):
    """Token classification: IOB2 tags per word, entity-level scores (the module docstring).

    Example:
        >>> recipe = tfft.load_recipe("recipes/contracts_ner.py")
        >>> tfft.Trainer(recipe).run()["entity_f1"]
    """

    name = "tokens"
    headline = "entity_f1"
    output_keys = ("entity_start", "entity_end", "entity_type", "entity_text", "entity_score", "entity_count")
    row_keys = ("input", "entities")

    def build_head(self, features, config, num_classes):
        """A float32 `Dense(num_tags)` on every token vector, after dropout and an optional
        hidden layer (`head.hidden`); `head.pooling` does not apply."""
        x = features
        if config.hidden:
            x = keras.layers.Dense(config.hidden, activation="relu", name="head_hidden")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
        return keras.layers.Dense(num_classes, dtype="float32", name="head_logits")(x)

    def build_loss(self, datasets, config):
        return TokenCrossentropy(datasets.num_classes, config.label_smoothing)

    def build_metrics(self, datasets):
        return [TokenAccuracy(name="accuracy")]

    def validation_scores(self, datasets):
        def scores(labels, logits):
            true, predicted, _ = sentence_tags(labels, logits, datasets.items["validation"], datasets.class_names)
            words = [(t, p) for ts, ps in zip(true, predicted) for t, p in zip(ts, ps)]
            return {"accuracy": float(np.mean([t == p for t, p in words])) if words else 0.0,
                    "entity_f1": entity_report(true, predicted)["f1"]}

        return scores

    def report(self, labels, logits, datasets):
        """The entity report (see `entity_metrics`) and the sentences whose entities are
        not exactly the true ones, as `(index, true entities, predicted entities)`."""
        sentences = datasets.items["validation"]
        true, predicted, probabilities = sentence_tags(labels, logits, sentences, datasets.class_names)
        report = entity_metrics(true, predicted, probabilities, datasets.class_names, labels)
        report["reference"] = evaluation.prediction_profile(probabilities, datasets.class_names)
        wrong = [(i, describe(text.split(" "), t), describe(text.split(" "), p))
                 for i, ((text, _), t, p) in enumerate(zip(sentences, true, predicted)) if spans(t) != spans(p)]
        return report, wrong

    def summary(self, report):
        return (f"validation entity F1 {report['entity_f1']:.4f} (precision {report['entity_precision']:.4f}, "
                f"recall {report['entity_recall']:.4f}; macro F1 {report['macro_f1']:.4f}) on "
                f"{report['num_examples']} sentences, {report['num_entities']} entities; word accuracy "
                f"{report['accuracy']:.4f}")

    def evaluation(self, labels, logits, datasets, class_names, trained):
        to_run = np.array([class_names.index(c) for c in datasets.class_names])
        labels = np.where(labels >= 0, to_run[np.maximum(labels, 0)], labels)
        sentences = [(text, [int(to_run[t]) for t in tags]) for text, tags in datasets.items["validation"]]
        true, predicted, probabilities = sentence_tags(labels, logits, sentences, class_names)
        report = entity_metrics(true, predicted, probabilities, class_names, labels)
        report["reliability"] = evaluation.calibration(labels[labels >= 0], probabilities)["bins"]
        current = evaluation.prediction_profile(probabilities, class_names)
        report["drift"] = (evaluation.drift(trained["reference"], current) if "reference" in trained else
                           dict(current=current, note="the run's metrics.json holds no validation reference"))
        return report

    def evaluation_lines(self, report):
        lines = per_class_table(report, key="per_entity", label="entity")
        lines.append(f"entity F1 {report['entity_f1']:.4f} (precision {report['entity_precision']:.4f}, recall "
                     f"{report['entity_recall']:.4f}), macro F1 {report['macro_f1']:.4f}, word accuracy "
                     f"{report['accuracy']:.4f}, ECE {report['ece']:.4f} on {report['num_examples']} sentences, "
                     f"{report['num_entities']} entities")
        if report["cut_words"]:
            lines.append(f"{report['cut_words']} words lay past data.sequence_length and count as tagged O "
                         f"({report['cut_entities']} of the true entities are in them)")
        return lines + drift_lines(report["drift"])

    def serving_outputs(self, model, class_names, k=5):
        from tfft.modalities.text.token_serving import entity_outputs

        return entity_outputs(model, class_names)

    def rows(self, names, outputs, k):
        """`{"input": name, "entities": [{start, end, type, text, score}], "cut_words": n}`."""
        rows = []
        for i, name in enumerate(names):
            count = int(outputs["entity_count"][i])
            entities = [dict(start=int(outputs["entity_start"][i][j]), end=int(outputs["entity_end"][i][j]),
                             type=_text(outputs["entity_type"][i][j]), text=_text(outputs["entity_text"][i][j]),
                             score=float(outputs["entity_score"][i][j])) for j in range(count)]
            rows.append(dict(input=name, entities=entities, cut_words=int(outputs["cut_words"][i])))
        return rows

    def row_lines(self, rows, output_format, k):
        """jsonl: one object per input; csv: one line per entity; table: the entities of
        each input on its line, `text [TYPE 0.97]`."""
        import csv
        import io

        if output_format == "jsonl":
            return [json.dumps(row, ensure_ascii=False) for row in rows]
        if output_format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(["input", "start", "end", "type", "text", "score"])
            for row in rows:
                for e in row["entities"]:
                    writer.writerow([row["input"], e["start"], e["end"], e["type"], e["text"], f"{e['score']:.6f}"])
            return buffer.getvalue().splitlines()
        width = max(len(row["input"]) for row in rows)
        lines = []
        for row in rows:
            found = "  ".join(f"{e['text']} [{e['type']} {e['score']:.2f}]" for e in row["entities"]) or "(no entities)"
            cut = f"  ({row['cut_words']} words past the sequence, not read)" if row["cut_words"] else ""
            lines.append(f"{row['input']:<{width}}  {found}{cut}")
        return lines


def entity_metrics(true, predicted, probabilities, class_names, labels):
    """The token-classification report of `metrics.json` (plain values):

    - entity level (the headline): `entity_f1`, `entity_precision`, `entity_recall` (micro),
      `macro_f1`, `macro_precision`, `macro_recall` (over the entity types that occur),
      `per_entity` (`{type: {precision, recall, f1, support, predicted}}`), `entity_types`
      (every type the tags know), `num_entities`, `num_predicted_entities`;
    - word level: `accuracy` (words whose tag is right), `per_tag`, `confusion_matrix`
      (rows true tags) and `class_names` (the tags), `num_words`, `ece` (over the words
      the model sees);
    - `num_examples` (sentences), `cut_words` (words past `sequence_length`, counted as `O`)
      and `cut_entities` (true entities with a word among them).

    Args:
        true: per sentence, the true tags of every word.
        predicted: per sentence, the predicted tags (`O` for a word past the sequence).
        probabilities: `[seen words, tags]` softmax rows (for the calibration).
        class_names: the tags.
        labels: `[n, sequence_length]` labels (-1 where untagged): which words were seen.

    Example:
        >>> report = entity_metrics(*sentence_tags(labels, logits, sentences, tags), tags, labels)
    """
    entities = entity_report(true, predicted)
    index = {name: i for i, name in enumerate(class_names)}
    y_true = np.array([index[t] for tags in true for t in tags], np.int64)
    y_pred = np.array([index[t] for tags in predicted for t in tags], np.int64)
    words = evaluation.classification_report(y_true, y_pred, class_names)
    seen = labels >= 0
    cut = [len(tags) - int(s.sum()) for tags, s in zip(true, seen)]
    cut_entities = sum(1 for tags, c in zip(true, cut) for _, _, end in spans(tags) if c and end > len(tags) - c)
    truth = labels[seen]
    return dict(
        task="tokens",
        entity_f1=entities["f1"],
        entity_precision=entities["precision"],
        entity_recall=entities["recall"],
        macro_f1=entities["macro_f1"],
        macro_precision=entities["macro_precision"],
        macro_recall=entities["macro_recall"],
        per_entity=entities["per_entity"],
        entity_types=types_of(class_names),
        num_entities=entities["num_entities"],
        num_predicted_entities=entities["num_predicted"],
        accuracy=words["accuracy"],
        num_examples=len(true),
        num_words=int(len(y_true)),
        cut_words=int(sum(cut)),
        cut_entities=int(cut_entities),
        per_tag=words["per_class"],
        confusion_matrix=words["confusion_matrix"],
        class_names=list(class_names),
        ece=evaluation.calibration(truth, probabilities)["ece"],
    )


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
