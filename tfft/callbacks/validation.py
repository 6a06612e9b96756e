"""Validation a user can trust: scored once per validation, after precise BatchNorm.

Keras scores `validation_data` before any callback runs, with whatever BatchNorm statistics
the model has at that moment. While BatchNorm trains, those are running averages of batch
statistics taken as the weights moved, and they can be far from what the saved model will
carry once precise BN recomputes them: a run from random weights logged chance accuracy
for 11 epochs, then scored 1.00 after the recompute. `Validation` replaces Keras's pass: at
every epoch end it first recomputes the statistics (when BatchNorm trains), then predicts
the validation split once and puts `val_loss` and the accuracy into the epoch logs, where
the TensorBoard logger, the checkpoints and early stopping read them. The predictions are
kept, so the stage-end report reuses them instead of predicting again.
"""

import dataclasses

import keras
import numpy as np

from tfft import evaluation


@dataclasses.dataclass
class Scored:
    """One validation pass: labels and logits at optimizer step `step`."""

    step: int
    labels: np.ndarray
    logits: np.ndarray


class Validation(keras.callbacks.Callback):
    """Scores a validation split at each epoch end and adds `val_*` keys to the logs.

    Put it first among the callbacks, so that later ones see its keys.

    Args:
        dataset: batched `(x, y)` validation data.
        loss: the compiled Keras loss (on logits).
        multi_label: labels are multi-hot; the metric is then `binary_accuracy`.
        before: optional callable run before each pass (precise BatchNorm), or None.
        skip: optional callable; when it returns True the epoch end is not scored (a run
            stopping on a signal or a NaN must not change the model after its checkpoint).
        scorer: optional `keras.Model` that predicts `dataset` in the callback's model's
            place: the head, on validation features computed once (`tfft.feature_cache`);
            the loss still adds the whole model's regularisation losses.
        scores: optional function `(labels, logits) -> {name: value}` that replaces the
            accuracy (`Task.validation_scores`: token accuracy and entity F1 for tags).

    Example:
        >>> validation = Validation(datasets.validation, keras.losses.SparseCategoricalCrossentropy(True))
        >>> model.fit(train, epochs=3, callbacks=[validation, logger])
        >>> validation.last.logits.shape
        (120, 4)
    """

    def __init__(self, dataset, loss, multi_label=False, before=None, skip=None, scorer=None, scores=None):
        super().__init__()
        self.dataset = dataset
        self.loss = loss
        self.multi_label = multi_label
        self.before = before
        self.skip = skip or (lambda: False)
        self.scorer = scorer
        self.scores = scores
        self.last = None

    def score(self):
        """Predict the split once with the current weights; return `{name: value}`."""
        labels, logits = evaluation.predict_outputs(self.scorer or self.model, self.dataset)
        self.last = Scored(int(np.asarray(self.model.optimizer.iterations)), labels, logits)
        return score_logits(labels, logits, self.loss, self.multi_label, self.model.losses, self.scores)

    def on_epoch_end(self, epoch, logs=None):
        if self.skip():
            return
        if self.before is not None:
            self.before()
        values = self.score()
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in values.items()})


def score_logits(labels, logits, loss, multi_label=False, extra_losses=(), scores=None):
    """`{"loss": ..., "accuracy" or "binary_accuracy": ...}` of logits against labels, as
    Keras's `evaluate` reports them (the loss includes the model's regularisation losses);
    with `scores`, the loss and what `scores(labels, logits)` returns.

    Example:
        >>> score_logits(np.array([0, 1]), np.array([[2.0, 0.0], [0.0, 1.0]]),
        ...              keras.losses.SparseCategoricalCrossentropy(from_logits=True))["accuracy"]
        1.0
    """
    value = float(keras.ops.convert_to_numpy(loss(labels, logits.astype("float32"))))
    value += float(sum(float(keras.ops.convert_to_numpy(extra)) for extra in extra_losses))
    if scores is not None:
        return {"loss": value, **scores(labels, logits)}
    if multi_label:
        accuracy = float(np.mean((logits > 0.0) == (labels > 0.5)))
        return {"loss": value, "binary_accuracy": accuracy}
    truth = labels.reshape(-1).astype("int64")
    return {"loss": value, "accuracy": float(np.mean(np.argmax(logits, axis=-1) == truth))}
