"""`tf.data` steps shared by the image, audio and text builders.

A builder lists its examples (`listing`), caches them in memory or in files named after a
fingerprint of the data (`cache_dataset`), maps its `preprocess` callable over the batches
of both splits and returns them in a `Datasets` (`finish_datasets`). What differs per modality (decoding, resizing, features,
augmentation) stays in its builder.

Training data is a function of the epoch: `train_epoch(epoch, skip)` gives that epoch's
batches, in an order and with random crops and augmentation that depend on the data seed
and the epoch alone (`epoch_seed`, `example_seeds`, `seeded_call`), from batch `skip` on.
`Datasets.train_stream(position)` chains the epochs into one stream that starts at any
batch, so a stage may end mid-epoch and the next one, or a resumed run, continues with the
very next batch.
"""

import hashlib
import os
import time

import keras
import tensorflow as tf

from tfft.callbacks.progress import EVERY, duration
from tfft.data.datasets import Datasets


def listing(paths, labels):
    """A dataset of `(path, label)` pairs: string paths and int32 labels."""
    return tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(labels, tf.int32))
    )


def fingerprint(value):
    """12 hex digits of the SHA-1 of `repr(value)`."""
    return hashlib.sha1(repr(value).encode("utf-8")).hexdigest()[:12]


def cache_dataset(ds, cache, name, digest):
    """Cache `ds` in memory (`cache=True`), in files (a path prefix) or not at all (False).

    File caches are named `{cache}-{name}-{digest()}`. TF reuses an existing cache
    file whatever the input, so the name carries a fingerprint of the data: other files,
    labels or settings start a new cache instead of silently replaying stale examples.
    `digest` is a callable (see `fingerprint`), so the data is only hashed when a file
    cache needs it.
    """
    if cache is True:
        return ds.cache()
    if not cache:
        return ds
    suffix = digest()
    prefix = os.fspath(cache)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    return ds.cache(f"{prefix}-{name}-{suffix}")


def filled(cache, ds, total=None, every=EVERY, clock=time.monotonic):
    """For a file cache, a callable that reads `ds` through once, else None.

    A file cache is complete only once one iterator has read it to the end; a stream cut
    mid-epoch would leave it half written. `Datasets.train_stream` calls this first. Filling
    it decodes every training example, which can take minutes: a line every `every` seconds
    says how far it is (`total`: the number of examples, for the ETA).
    """
    if not isinstance(cache, (str, os.PathLike)):
        return None

    def fill():
        start = last = clock()
        for count, _ in enumerate(ds, 1):
            now = clock()
            if now - last >= every:
                last = now
                pace = (now - start) / count
                left = f" of {total}, ETA {duration(pace * (total - count))}" if total else ""
                print(f"filling the training cache {os.fspath(cache)}: {count} examples{left}", flush=True)

    return fill


def epoch_seed(seed, epoch):
    """The int64 shuffle seed of one epoch: a different order every epoch, the same every run."""
    return tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)


def shuffle_epoch(ds, buffer, seed, epoch):
    """`ds` shuffled in the order of epoch `epoch` (a tensor: `train_epoch` runs inside
    `Dataset.flat_map`, see `Datasets.epoch`).

    The function graph gets its own graph-level seed first: `shuffle` combines its seed
    with the graph's, and TensorFlow's `get_seed` cannot compare a tensor seed with a
    global seed of 0. The order then depends on the data seed and the epoch alone, not on
    the global seed a caller set.
    """
    if not tf.executing_eagerly():
        tf.compat.v1.set_random_seed(1)
    return ds.shuffle(buffer, seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False)


def example_seeds(seed, epoch, start=0):
    """A dataset of int64 seeds, one per example of an epoch from position `start` on.

    Each seed is a stateless hash of `(seed, epoch, position)`, so an example's random crop
    or augmentation depends on where it falls in the data stream, not on how many draws
    came before: a stream started mid-epoch draws exactly what a full one drew there.
    """
    epoch = tf.cast(epoch, tf.int64)

    def draw(position):
        key = tf.stack([tf.cast(seed, tf.int64), epoch * (1 << 32) + position])
        return tf.random.stateless_uniform([], key, minval=None, maxval=None, dtype=tf.int64)

    return tf.data.Dataset.range(tf.cast(start, tf.int64), tf.int64.max).map(draw)


def seed_generators(layer):
    """Every `keras.random.SeedGenerator` inside `layer` (a preprocessing layer or Sequential)."""
    found = {}
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        for generator in list(getattr(sub, "_seed_generators", [])) + [getattr(sub, "generator", None)]:
            if isinstance(generator, keras.random.SeedGenerator):
                found[id(generator)] = generator
    return list(found.values())


def seeded_call(layer, inputs, seed, batch):
    """Call Keras random preprocessing `layer` on one batch with seeds set from the batch's
    place in the stream (`seed`, and `batch`: the global batch number).

    Keras random layers draw from `SeedGenerator` state that advances with every call; here
    that state is set before each batch, so a batch is augmented the same way whether the
    stream started at epoch 0 or mid-epoch after a resume. Map it without parallel calls.
    """
    for offset, generator in enumerate(seed_generators(layer)):
        state = generator.state
        value = tf.stack([tf.cast(seed, tf.int64) + offset, tf.cast(batch, tf.int64) * (1 << 16)])
        state.assign(tf.cast(value, state.dtype))
    return layer(inputs, training=True)


def finish_datasets(
    train_epoch,
    validation,
    class_names,
    class_weights,
    num_train,
    num_validation,
    validation_examples,
    batch_size,
    multi_label=False,
    prime=None,
    skipped=(),
    items=None,
    in_order=None,
    shuffle=None,
):
    """A `Datasets` of the training epochs and the prefetched validation split.

    Args:
        train_epoch: `train_epoch(epoch, skip)`, the batched training dataset of one epoch
            from batch `skip` on (a pure function of the epoch; see the module docstring).
        prime: optional callable run once before the first stream (see `filled`).
        skipped: `(file, reason)` of every file left out (`on_error="skip"`).
        items: `{"train": [(file or text, label)], "validation": [...]}`, for checks.
        in_order: the training examples batched in listing order, when no random crop or
            augmentation changes them from epoch to epoch (see `Datasets.in_order`).
        shuffle: `(buffer, seed)` as given to `shuffle_epoch` (see `Datasets.order`).
    """
    return Datasets(
        train_epoch=train_epoch,
        validation=validation.prefetch(tf.data.AUTOTUNE),
        class_names=list(class_names),
        class_weights=class_weights,
        num_train=num_train,
        num_validation=num_validation,
        validation_examples=validation_examples,
        multi_label=multi_label,
        batch_size=int(batch_size),
        prime=prime,
        skipped=list(skipped),
        items=items or {},
        in_order=in_order,
        shuffle=shuffle,
    )
