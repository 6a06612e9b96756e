"""Text classification datasets from folders, CSV, JSON Lines or TensorFlow Datasets.

`text_datasets` reads labelled texts into memory, checks them (UTF-8, no empty texts, known
labels), splits them per class and builds `tf.data` pipelines of raw strings that are
batched and then handed to `preprocess`, typically a keras-hub preprocessor that tokenizes
a batch of strings. Labels are int32 class indices, or float32 multi-hot vectors when
`multi_label=True`. The readers of each kind of source live in `tfft/modalities/text/sources.py`.
"""

import hashlib

import numpy as np
import tensorflow as tf

from tfft.data import sources
from tfft.data.checks import (
    check_cache,
    check_preprocess,
    check_validation_split,
    positive_int,
)
from tfft.data.pipeline import cache_dataset, shuffle_epoch, filled, finish_datasets
from tfft.modalities.text.sources import (
    TEXT_EXTENSIONS,
    read_csv,
    read_folder,
    read_jsonl,
    read_tfds,
)
from tfft.errors import DataError

__all__ = ["TEXT_EXTENSIONS", "text_datasets"]


# --- labels --------------------------------------------------------------------------


def _encode_labels(labels, wheres, class_names, multi_label, label_column):
    """Class names per example to int32 indices or float32 multi-hot rows."""
    index = {name: i for i, name in enumerate(class_names)}
    rows = np.zeros((len(labels), len(class_names)), np.float32) if multi_label else None
    indices = np.zeros(len(labels), np.int32)
    for i, (label, where) in enumerate(zip(labels, wheres)):
        names = label if multi_label else (label,)
        for name in names:
            if name not in index:
                raise DataError(
                    f"{where}: label '{name}' does not occur in the training data; "
                    f"known labels: {class_names}. Received: {label_column}='{name}'"
                )
            if multi_label:
                rows[i, index[name]] = 1.0
        # Multi-label examples are stratified by their first label; an example with no
        # label forms its own group.
        indices[i] = index[names[0]] if names else len(class_names)
    return (rows if multi_label else indices), indices


def _class_names(labels, multi_label, source):
    names = {n for label in labels for n in label} if multi_label else set(labels)
    names = sources._sort_label_names(names)
    if len(names) < 2:
        raise DataError(
            f"{source} has labels for only {len(names)} class: a classifier needs at "
            f"least two. Received: classes={names}"
        )
    return names


# --- pipelines -----------------------------------------------------------------------


def _slices(texts, labels):
    return tf.data.Dataset.from_tensor_slices(
        (tf.constant(texts, tf.string, shape=[len(texts)]), tf.constant(labels))
    )


def _fingerprint(texts, labels):
    digest = hashlib.sha1()
    for text in texts:
        digest.update(text if isinstance(text, bytes) else text.encode("utf-8"))
        digest.update(b"\0")
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:12]


def _cache(ds, cache, split, texts, labels):
    # A file cache's name carries a fingerprint of the examples: other data starts a new
    # cache instead of replaying.
    return cache_dataset(ds, cache, split, lambda: _fingerprint(texts, labels))


def _check_arguments(
    *, sources_given, batch_size, shuffle_buffer, validation_split, split_needed,
    preprocess, cache, multi_label, label_delimiter, class_weights,
):
    if len(sources_given) != 1:
        raise DataError(
            "Pass exactly one of `path` (a class-per-folder tree of .txt files), `csv`, "
            f"`jsonl` and `tfds`. Received: {', '.join(sources_given) or 'none'}"
        )
    positive_int("batch_size", batch_size)
    positive_int("shuffle_buffer", shuffle_buffer)
    if split_needed:
        check_validation_split(validation_split, "give a separate validation set")
    check_preprocess(preprocess)
    check_cache(cache)
    if label_delimiter is not None and (
        not multi_label or not isinstance(label_delimiter, str) or not label_delimiter
    ):
        raise DataError(
            "label_delimiter must be a non-empty string and needs multi_label=True. "
            f"Received: label_delimiter={label_delimiter!r}, multi_label={multi_label!r}"
        )
    if multi_label and class_weights is not None:
        raise DataError(
            "class_weights is not supported with multi_label=True: Keras class weights "
            "need one class per example. Weight the loss instead, or pass "
            f"class_weights=None. Received: class_weights={class_weights!r}"
        )


def text_datasets(
    path=None,
    csv=None,
    jsonl=None,
    tfds=None,
    text_column="text",
    label_column="label",
    label_delimiter=None,
    multi_label=False,
    validation_path=None,
    validation_split=0.2,
    tfds_split=("train", "test"),
    batch_size=32,
    seed=0,
    preprocess=None,
    class_weights=None,
    cache=True,
    shuffle_buffer=10000,
    holdout=None,
    on_error="raise",
):
    """Build training and validation text-classification datasets.

    Give exactly one source:

    - `path`: a class-per-folder tree of UTF-8 `.txt` files, one example per file;
    - `csv`: a UTF-8 CSV with a header row naming `text_column` and `label_column`;
    - `jsonl`: UTF-8 JSON Lines, one object per line with those two keys;
    - `tfds`: a TensorFlow Datasets name, read with `tfds.load`; `text_column` and
      `label_column` name its features and the class names come from the label's
      `ClassLabel`.

    Without a separate validation set (`validation_path`, or the second entry of
    `tfds_split`), each class is split into training and validation. Texts of files, CSV
    and JSON Lines are stripped of surrounding whitespace; TFDS texts are kept as stored.
    The training split is shuffled every epoch; the validation split keeps a fixed order.
    Both are batched before `preprocess`, so it receives a 1-D string tensor per batch.

    Args:
        path: folder holding one sub-folder of `.txt` files per class.
        csv: CSV file path.
        jsonl: JSON Lines file path.
        tfds: TFDS dataset name, e.g. `"imdb_reviews"`.
        text_column: CSV column, JSON key or TFDS feature holding the text.
        label_column: CSV column, JSON key or TFDS feature holding the label.
        label_delimiter: with `multi_label`, splits a label string such as
            `"billing|refund"` into several labels.
        multi_label: each example has any number of labels (a JSON list, or a string
            split by `label_delimiter`); labels become float32 multi-hot vectors.
        validation_path: a folder or file of the same kind and columns as the source, used
            as the validation split; its labels must occur in the training data.
        validation_split: share of each class held out for validation when no separate
            validation set is given (multi-label examples are stratified by their first
            label).
        tfds_split: `(train_split, validation_split)` for `tfds`; a None validation split
            (or a single split name) splits the training split instead.
        batch_size: examples per batch.
        seed: seed for the split and the shuffle.
        preprocess: callable on a batch of strings, e.g. a keras-hub
            `TextClassifierPreprocessor`; None yields the raw strings.
        class_weights: None, `"balanced"` or `{class: weight}`; see
            `tfft.data.sources.class_weights`. Not supported with `multi_label`.
        cache: True caches the examples in memory, a string caches them in files with that
            path prefix, False does not cache.
        shuffle_buffer: upper bound on the shuffle buffer.
        holdout: None, or a share of each class of the training split that replaces the
            validation split, which is then not read at all (`validation_path` and a TFDS
            validation split included).
        on_error: `"raise"` at the first text file that is not UTF-8 or is empty, or
            `"skip"`: leave those files out (`Datasets.skipped` lists them). Class folders
            only; a CSV or JSON Lines file is read whole or not at all.

    Returns:
        A `Datasets` whose `validation_examples` holds the unbatched raw validation texts
        and their labels in the order of `validation`.

    Raises:
        DataError: for bad arguments, a missing source, text that is not UTF-8, an empty
            text, a missing column or key, malformed JSON, an unknown TFDS name, fewer than
            two classes, or a validation label the training data does not have. The
            message names the file and line where there is one.

    Example:
        >>> preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        ...     "bert_tiny_en_uncased", sequence_length=128)
        >>> data = text_datasets(csv="tickets.csv", preprocess=preprocessor)
        >>> data.class_names
        ['account_access', 'billing', 'bug', 'feature_request', 'refund', 'shipping']
    """
    given = {"path": path, "csv": csv, "jsonl": jsonl, "tfds": tfds}
    given = {key: value for key, value in given.items() if value is not None}
    if isinstance(tfds_split, str):
        tfds_split = (tfds_split, None)
    if tfds is not None and (
        not isinstance(tfds_split, (tuple, list)) or len(tfds_split) != 2
    ):
        raise DataError(
            "tfds_split must be a split name or a (train_split, validation_split) pair. "
            f"Received: tfds_split={tfds_split!r}"
        )
    if tfds is not None and validation_path is not None:
        raise DataError(
            "validation_path does not apply to a TFDS source; name the validation split "
            f"in tfds_split instead. Received: validation_path={validation_path!r}"
        )
    separate = validation_path is not None or (tfds is not None and tfds_split[1])
    _check_arguments(
        sources_given=[f"{k}={v!r}" for k, v in given.items()],
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        validation_split=validation_split,
        split_needed=not separate,
        preprocess=preprocess,
        cache=cache,
        multi_label=multi_label,
        label_delimiter=label_delimiter,
        class_weights=class_weights,
    )
    if path is not None and multi_label:
        raise DataError(
            "A class-per-folder tree gives one label per file; use a CSV or JSON Lines "
            f"file for multi-label data. Received: path={path!r}, multi_label=True"
        )
    kind, source = next(iter(given.items()))
    columns = (text_column, label_column, multi_label, label_delimiter)
    val_texts = val_labels = val_wheres = None

    if holdout is not None:
        # Choices are made on training data only: the validation split is never read.
        validation_path = None
        tfds_split = (tfds_split[0], None) if tfds is not None else tfds_split
    sources.check_on_error(on_error)
    skipped = [] if on_error == "skip" else None
    if kind == "path":
        texts, labels, wheres, class_names = read_folder(source, skipped)
        if validation_path is not None:
            val_texts, val_labels, val_wheres, _ = read_folder(validation_path, skipped)
    elif kind == "tfds":
        texts, labels, class_names = read_tfds(source, tfds_split[0], *columns[:3])
        wheres = [f"TFDS '{source}' split '{tfds_split[0]}'"] * len(texts)
        if len(class_names) < 2:
            raise DataError(
                f"TFDS dataset '{source}' has only {len(class_names)} class: a "
                f"classifier needs at least two. Received: classes={class_names}"
            )
        if tfds_split[1]:
            val_texts, val_labels, _ = read_tfds(source, tfds_split[1], *columns[:3])
            val_wheres = [f"TFDS '{source}' split '{tfds_split[1]}'"] * len(val_texts)
    else:
        read = read_csv if kind == "csv" else read_jsonl
        texts, labels, wheres = read(source, *columns)
        class_names = _class_names(labels, multi_label, source)
        if validation_path is not None:
            val_texts, val_labels, val_wheres = read(validation_path, *columns)

    encoded, strata = _encode_labels(labels, wheres, class_names, multi_label, label_column)
    if holdout is not None:
        if not separate:
            kept, _ = sources.stratified_split(strata, validation_split, seed)
            texts, encoded, strata = [texts[i] for i in kept], encoded[kept], [strata[i] for i in kept]
        fit_idx, held_idx = sources.holdout_split(strata, holdout, seed, f"{kind}={source!r}")
        train_texts, train_encoded = [texts[i] for i in fit_idx], encoded[fit_idx]
        val_texts, val_encoded = [texts[i] for i in held_idx], encoded[held_idx]
    elif val_texts is not None:
        val_encoded, _ = _encode_labels(
            val_labels, val_wheres, class_names, multi_label, label_column
        )
        train_texts, train_encoded = texts, encoded
    else:
        train_idx, val_idx = sources.stratified_split(strata, validation_split, seed)
        if len(val_idx) == 0:
            raise DataError(
                "The split left no validation examples because every class has a single "
                "example; add examples or give a separate validation set. "
                f"Received: {kind}={source!r}, num_examples={len(texts)}"
            )
        train_texts = [texts[i] for i in train_idx]
        val_texts = [texts[i] for i in val_idx]
        train_encoded, val_encoded = encoded[train_idx], encoded[val_idx]

    weights = None
    if not multi_label:
        weights = sources.class_weights(
            train_encoded, len(class_names), class_weights, class_names=class_names
        )

    examples = _cache(
        _slices(train_texts, train_encoded), cache, "train", train_texts, train_encoded
    )
    buffer = min(int(shuffle_buffer), len(train_texts))
    batch_size = int(batch_size)

    def train_epoch(epoch, skip=0):
        ds = shuffle_epoch(examples, buffer, seed, epoch)
        ds = ds.skip(skip * batch_size).batch(batch_size)
        return ds if preprocess is None else ds.map(
            lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)

    val_examples = _cache(
        _slices(val_texts, val_encoded), cache, "validation", val_texts, val_encoded
    )
    validation = val_examples.batch(batch_size)
    if preprocess is not None:
        validation = validation.map(lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if cache is not True:
        # A file cache cannot be read by two iterators while it is being written.
        val_examples = _slices(val_texts, val_encoded)

    def in_order():
        ds = (examples if cache is True else _slices(train_texts, train_encoded)).batch(batch_size)
        return ds if preprocess is None else ds.map(lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)

    return finish_datasets(
        train_epoch, validation, class_names, weights, len(train_texts), len(val_texts),
        val_examples, batch_size, multi_label=bool(multi_label), prime=filled(cache, examples, len(train_texts)),
        skipped=skipped or [],
        items=dict(train=list(zip(train_texts, _as_lists(train_encoded))),
                   validation=list(zip(val_texts, _as_lists(val_encoded)))),
        in_order=in_order, shuffle=(buffer, seed),
    )


def _as_lists(encoded):
    """Labels as plain values: an int, or the class indices of a multi-hot row."""
    array = np.asarray(encoded)
    if array.ndim == 2:
        return [tuple(int(i) for i in np.flatnonzero(row > 0.5)) for row in array]
    return [int(v) for v in array]
