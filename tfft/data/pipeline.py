"""`tf.data` steps shared by the image, audio and text builders.

A builder lists its examples (`listing`), caches them in memory or in files named after a
fingerprint of the data (`cache_dataset`), maps its `preprocess` callable over the batches
of both splits (`map_preprocess`) and returns them prefetched in a `Datasets`
(`finish_datasets`). What differs per modality (decoding, resizing, features,
augmentation) stays in its builder.
"""

import hashlib
import os

import tensorflow as tf

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


def map_preprocess(train, validation, preprocess):
    """`(train, validation)` with `preprocess` applied to the inputs of every batch."""
    if preprocess is None:
        return train, validation
    train = train.map(lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    validation = validation.map(
        lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return train, validation


def finish_datasets(
    train,
    validation,
    class_names,
    class_weights,
    num_train,
    num_validation,
    validation_examples,
    multi_label=False,
):
    """A `Datasets` of the prefetched training and validation splits."""
    return Datasets(
        train=train.prefetch(tf.data.AUTOTUNE),
        validation=validation.prefetch(tf.data.AUTOTUNE),
        class_names=list(class_names),
        class_weights=class_weights,
        num_train=num_train,
        num_validation=num_validation,
        validation_examples=validation_examples,
        multi_label=multi_label,
    )
