"""A pairs stage: the backbone learns to tell the classes apart before the head exists.

With tens of examples per class, cross-entropy through a new head barely reshapes a
pretrained encoder: the head fits the few examples on features that were never made for
these classes. SetFit (Tunstall et al., 2022) trains the encoder first on pairs of training
examples: the cosine of two examples' pooled features is pulled to 1 when they share a
class and to 0 when they do not; only then is a classifier fitted on the features
(docs/benchmarks.md measures it on man pages, 7 sections of 10 pages each).

SetFit draws its pairs up front. Here every batch of the ordinary training stream gives
all its pairs at once (16 examples, 120 pairs), so a pairs stage reads the same data, in
the same order, with the same augmentation and resume positions as any other stage. The
loss is SetFit's squared cosine error, averaged over the batch's same-class pairs and over
its other pairs separately and weighted half and half, so that the classes' number does not
decide how much the pulling weighs against the pushing.

A pairs stage is a `tfft.Stage` with `objective="pairs"` (`schedule.pairs` makes
`two_phase` a pairs stage and a head stage). The Trainer fits a `PairModel`
(the classifier's layers up to the head's input, the head left out) in the stage's place;
its validations score the same loss on the validation split (`val_pair_loss`) and never
rank checkpoints, since the classifier's head has not been trained yet.
"""

import keras
import numpy as np
import tensorflow as tf

from tfft import evaluation
from tfft.callbacks.validation import Validation

# The loss of features that carry no information (every cosine 0): a same-class pair is
# off by 1, another pair by 0, each half of the loss.
CHANCE = 0.5


def pair_loss(features, labels):
    """SetFit's cosine loss over every pair of a batch, same-class and other pairs weighted
    half and half.

    Args:
        features: `[batch, dim]` pooled features.
        labels: `[batch]` class indices.

    Returns:
        A scalar: the mean of `(cos(u, v) - same)^2` over same-class pairs, plus that over
        other pairs, halved. A batch without a same-class pair (or without another pair)
        scores the other kind alone.

    Example:
        >>> float(pair_loss(tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), tf.constant([0, 0, 1])))
        0.0
    """
    features = tf.math.l2_normalize(tf.cast(features, tf.float32), axis=-1)
    labels = tf.reshape(labels, [-1])
    cosine = tf.matmul(features, features, transpose_b=True)
    same = tf.cast(tf.equal(labels[:, None], labels[None, :]), tf.float32)
    others = 1.0 - same
    same = same - tf.eye(tf.shape(labels)[0])  # an example with itself is no pair
    error = tf.square(cosine - same)
    parts = []
    for mask in (same, others):
        count = tf.reduce_sum(mask)
        parts.append((tf.reduce_sum(error * mask) / tf.maximum(count, 1.0), tf.cast(count > 0, tf.float32)))
    (pulled, has_same), (pushed, has_others) = parts
    return (pulled * has_same + pushed * has_others) / tf.maximum(has_same + has_others, 1.0)


class PairModel(keras.Model):
    """Trains `features` (a model from the classifier's inputs to the head's input) on
    `pair_loss`: what `fit` runs in a pairs stage.

    Its variables are the classifier's own, so the stage's freezing, per-group rates and
    optimizer apply as in any stage; the epoch logs hold `loss`, the pair loss.

    Args:
        features: `keras.Model` from the classifier's inputs to the pooled features.

    Example:
        >>> pairs = PairModel(keras.Model(classifier.inputs, pooled))
        >>> pairs.compile(optimizer=trainer.optimizer)
        >>> pairs.fit(train_stream, steps_per_epoch=50)
    """

    def __init__(self, features, **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        return self.features(inputs, training=training)

    @property
    def metrics(self):
        return [self.tracker]

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            loss = pair_loss(self(x, training=True), y)
            # Replicas' gradients are summed: each contributes its share of the mean.
            scaled = self.optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)
        variables = self.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        self.tracker.update_state(loss)
        return {"loss": self.tracker.result()}


class PairValidation(Validation):
    """The validation of a pairs stage: `pair_loss` over the validation split's batches,
    as `val_pair_loss` in the epoch logs (the classifier's head is not trained yet, so its
    accuracy says nothing). Runs as `Validation` does, `before` (precise BatchNorm) and
    `skip` included.

    Args:
        dataset: batched `(x, y)` validation data.
        features: `keras.Model` from the inputs to the pooled features.
        before: optional callable run before each pass (precise BatchNorm), or None.
        skip: optional callable; True leaves the epoch end unscored.

    Example:
        >>> validation = PairValidation(datasets.validation, pairs.features)
    """

    def __init__(self, dataset, features, before=None, skip=None):
        super().__init__(dataset, loss=None, before=before, skip=skip)
        self.features = features

    def score(self):
        """The pair loss of each validation batch, averaged weighted by its pairs."""
        sizes = [int(np.asarray(y).shape[0]) for _, y in self.dataset]
        labels, features = evaluation.predict_outputs(self.features, self.dataset)
        losses, weights, start = [], [], 0
        for size in sizes:
            rows = slice(start, start + size)
            losses.append(float(pair_loss(features[rows], labels[rows])))
            weights.append(size * (size - 1))
            start += size
        return {"pair_loss": float(np.average(losses, weights=weights)) if sum(weights) else float("nan")}
