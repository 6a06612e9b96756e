"""The container every data builder returns."""

import dataclasses
import math
from typing import Callable, Optional

import tensorflow as tf


@dataclasses.dataclass
class Datasets:
    """Training epochs, the validation split and what the trainer needs to know of them.

    Args:
        train_epoch: `train_epoch(epoch, skip=0)` returns the batched training dataset of
            `(inputs, label)` of one epoch, from batch `skip` on: shuffled and augmented as
            a pure function of the data seed and the epoch number, so any epoch, or any
            batch of it, can be produced again exactly.
        validation: batched `tf.data.Dataset` of `(inputs, label)`; never augmented, fixed order.
        class_names: label names; label `i` is `class_names[i]`.
        class_weights: `{label: weight}` for `fit(class_weight=...)`, or None.
        num_train: number of training examples.
        num_validation: number of validation examples.
        validation_examples: optional unbatched dataset of raw validation examples (for
            dashboards that show what was misclassified), in the same order as `validation`.
        multi_label: labels are multi-hot float vectors `[num_classes]` (any number of
            classes per example) instead of one int class index.
        batch_size: global batch size of `train_epoch`.
        drop_remainder: whether an epoch drops its short last batch (needed when several
            replicas split each batch).
        prime: optional callable that `train_stream` runs once first (fills a file cache).
        skipped: `(file, reason)` of the files left out because they cannot be read
            (`data.on_error="skip"`).
        items: `{"train": [(file or text, label)], "validation": [...]}` as listed, for
            `tfft check-data`.
        statistics: what the pipeline computed from the training split and an exported
            model needs (audio `normalize="dataset"`: per-band `mean` and `std`), or None.
        in_order: optional callable returning the training examples as the model receives
            them, batched `(x, y)` in listing order; given only when a training example is
            the same in every epoch (no random crop or augmentation), so that what a frozen
            backbone makes of it can be computed once (`tfft.feature_cache`).
        shuffle: `(buffer, seed)` of the epochs' `shuffle_epoch`, so that `order` can tell
            which examples each training batch holds; None when unknown.
        separate_validation: the validation split was read from a source of its own (a
            demo set's test file), not carved from the training data: it may be a test
            set, so nothing is chosen on it (`train.restore_best="auto"`).

    Example:
        >>> ds = Datasets(train_epoch, val, ["cat", "dog"], None, 80, 20, batch_size=16)
        >>> ds.steps_per_epoch, ds.num_classes
        (5, 2)
        >>> stream = ds.train_stream(position=7)   # epoch 1 from its third batch on
    """

    train_epoch: Callable
    validation: tf.data.Dataset
    class_names: list
    class_weights: Optional[dict]
    num_train: int
    num_validation: int
    validation_examples: Optional[tf.data.Dataset] = None
    multi_label: bool = False
    batch_size: int = 32
    drop_remainder: bool = False
    prime: Optional[Callable] = None
    skipped: list = dataclasses.field(default_factory=list)
    items: dict = dataclasses.field(default_factory=dict)
    statistics: Optional[dict] = None
    in_order: Optional[Callable] = None
    shuffle: Optional[tuple] = None
    separate_validation: bool = False

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def steps_per_epoch(self):
        """Batches in one pass over the training data."""
        if self.drop_remainder:
            return max(1, self.num_train // self.batch_size)
        return math.ceil(self.num_train / self.batch_size)

    def epoch(self, epoch, skip=0):
        """The batches of training epoch `epoch` from batch `skip` on.

        Built inside `flat_map`, as every epoch of `train_stream` is, so that it is the very
        same data whether asked for alone or as part of a stream.
        """
        start = tf.data.Dataset.from_tensors(tf.constant(int(epoch), tf.int64))
        return start.flat_map(lambda e: self.train_epoch(e, int(skip)))

    @property
    def train(self):
        """The first training epoch, batched and prefetched (order and augmentation fixed)."""
        return self.epoch(0).prefetch(tf.data.AUTOTUNE)

    def order(self, epoch, skip=0):
        """The example indices of training epoch `epoch`'s batches from batch `skip` on, in
        listing order's numbering: batch `i` of `order(e)` holds the examples of batch `i`
        of `train_epoch(e)`. Needs `shuffle`.

        A shuffle's order depends on its seed, buffer and number of elements, not on what
        the elements are, so the same shuffle of `range(num_train)` numbers the examples.
        """
        from tfft.data.pipeline import shuffle_epoch

        buffer, seed = self.shuffle
        indices = shuffle_epoch(tf.data.Dataset.range(self.num_train), buffer, seed, epoch)
        return indices.batch(self.batch_size, drop_remainder=self.drop_remainder).skip(skip)

    def index_stream(self, position=0):
        """`order`'s batches chained into one endless stream from global batch `position`,
        batch for batch the examples of `train_stream(position)`."""
        return self._stream(self.order, position)

    def train_stream(self, position=0):
        """An endless stream of training batches starting at global batch `position`.

        Batch `position` is batch `position % steps_per_epoch` of epoch
        `position // steps_per_epoch`; the stream goes on through every later epoch, each
        in its own order. Two streams started at 0 and at `k` agree from batch `k` on.

        Between the workers of a multi-worker strategy the stream is sharded by data: each
        worker reads it whole and keeps its share of every global batch, so that the
        workers' shares together are the batch one process would train on (sharding by
        file would split files the stream reads in a shuffled order, or a TFDS set of one
        file, unevenly).
        """
        if self.prime is not None:
            self.prime()
            self.prime = None
        return self._stream(self.train_epoch, position)

    def _stream(self, epoch_batches, position):
        epoch, skip = divmod(int(position), self.steps_per_epoch)
        start = tf.data.Dataset.from_tensors(tf.constant(epoch, tf.int64))
        first = start.flat_map(lambda e: epoch_batches(e, int(skip)))
        rest = tf.data.Dataset.range(epoch + 1, tf.int64.max).flat_map(lambda e: epoch_batches(e, 0))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return first.concatenate(rest).prefetch(tf.data.AUTOTUNE).with_options(options)
