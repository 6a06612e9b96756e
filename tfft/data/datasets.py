"""The container every data builder returns."""

import dataclasses
from typing import Optional

import tensorflow as tf


@dataclasses.dataclass
class Datasets:
    """Batched training and validation datasets and what the trainer needs to know of them.

    Args:
        train: batched `tf.data.Dataset` of `(inputs, label)`; shuffled and augmented.
        validation: batched `tf.data.Dataset` of `(inputs, label)`; never augmented, fixed order.
        class_names: label names; label `i` is `class_names[i]`.
        class_weights: `{label: weight}` for `fit(class_weight=...)`, or None.
        num_train: number of training examples.
        num_validation: number of validation examples.
        validation_examples: optional unbatched dataset of raw validation examples (for
            dashboards that show what was misclassified), in the same order as `validation`.
        multi_label: labels are multi-hot float vectors `[num_classes]` (any number of
            classes per example) instead of one int class index.

    Example:
        >>> ds = Datasets(train, val, ["cat", "dog"], None, 80, 20)
        >>> ds.num_classes
        2
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    class_names: list
    class_weights: Optional[dict]
    num_train: int
    num_validation: int
    validation_examples: Optional[tf.data.Dataset] = None
    multi_label: bool = False

    @property
    def num_classes(self):
        return len(self.class_names)
