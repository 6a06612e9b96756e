"""Text classification datasets from folders, CSV, JSON Lines or TensorFlow Datasets.

`text_datasets` reads labelled texts into memory, checks them (UTF-8, no empty texts, known
labels), splits them per class and builds `tf.data` pipelines of raw strings that are
batched and then handed to `preprocess`, typically a keras-hub preprocessor that tokenizes
a batch of strings. Labels are int32 class indices, or float32 multi-hot vectors when
`multi_label=True`.
"""

import csv
import difflib
import hashlib
import io
import json
import numbers
import os

import numpy as np
import tensorflow as tf

from tfft.data import sources
from tfft.data.datasets import Datasets
from tfft.errors import DataError

TEXT_EXTENSIONS = (".txt",)


# --- reading -------------------------------------------------------------------------


def _decode(data, path):
    """Decode file bytes as UTF-8 (a leading byte-order mark is dropped)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        snippet = data[start : end if end != -1 else len(data)][:120]
        raise DataError(
            f"{path}, line {line}: byte 0x{data[e.start]:02x} at offset {e.start} is not "
            f"valid UTF-8; re-save the file as UTF-8. Received: {snippet!r}"
        ) from None


def _read_bytes(path, kind):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(
            f"{kind} {path} does not exist or is not a file; check the path. "
            f"Received: '{path}'"
        )
    with open(path, "rb") as f:
        return path, f.read()


def _read_folder(path):
    paths, labels, class_names = sources.list_class_folders(path, TEXT_EXTENSIONS)
    texts = []
    for file_path in paths:
        with open(file_path, "rb") as f:
            text = _decode(f.read(), file_path).strip()
        if not text:
            raise DataError(
                f"{file_path}: the file is empty or only whitespace; every file must hold "
                f"one example's text. Received: file='{file_path}'"
            )
        texts.append(text)
    names = [class_names[label] for label in labels]
    # Like the other sources, integer-named class folders sort as numbers.
    return texts, names, paths, sources._sort_label_names(class_names)


def _split_label(value, where, label_column, multi_label, delimiter):
    """A label cell or JSON value as one class name, or a tuple of them if multi-label."""
    if isinstance(value, bool) or value is None or not isinstance(
        value, (str, numbers.Integral, list)
    ):
        raise DataError(
            f"{where}: the '{label_column}' value must be a class name (string or "
            f"integer){' or a list of them' if multi_label else ''}. "
            f"Received: {label_column}={value!r}"
        )
    if isinstance(value, list):
        if not multi_label:
            raise DataError(
                f"{where}: the '{label_column}' value is a list; pass multi_label=True "
                f"for examples with several labels. Received: {label_column}={value!r}"
            )
        names = [_split_label(v, where, label_column, False, None) for v in value]
        return tuple(dict.fromkeys(names))
    name = str(value).strip()
    if not name:
        raise DataError(
            f"{where}: the '{label_column}' value is empty; every example needs a label. "
            f"Received: {label_column}={value!r}"
        )
    if not multi_label:
        return name
    pieces = name.split(delimiter) if delimiter else [name]
    names = tuple(dict.fromkeys(p.strip() for p in pieces if p.strip()))
    if not names:
        raise DataError(
            f"{where}: the '{label_column}' value holds no label between the "
            f"'{delimiter}' delimiters. Received: {label_column}={value!r}"
        )
    return names


def _check_text(value, where, text_column):
    if not isinstance(value, str):
        raise DataError(
            f"{where}: the '{text_column}' value must be a string. "
            f"Received: {text_column}={value!r}"
        )
    text = value.strip()
    if not text:
        raise DataError(
            f"{where}: the '{text_column}' value is empty; every example needs a text. "
            f"Received: {text_column}={value!r}"
        )
    return text


def _read_csv(path, text_column, label_column, multi_label, delimiter):
    path, data = _read_bytes(path, "CSV file")
    reader = csv.DictReader(io.StringIO(_decode(data, path), newline=""))
    texts, labels, wheres = [], [], []
    parsed = 0  # lines parsed so far, to name the line where a parse error starts
    try:
        header = reader.fieldnames or []
        for column in (text_column, label_column):
            if column not in header:
                raise DataError(
                    f"{path}, line 1: the header has no '{column}' column; rename the "
                    f"column or pass text_column=/label_column=. Received: columns={header}"
                )
        parsed = reader.line_num
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            parsed = reader.line_num
            # A short row fills missing cells with None.
            texts.append(_check_text(row[text_column] or "", where, text_column))
            labels.append(
                _split_label(
                    row[label_column] or "", where, label_column, multi_label, delimiter
                )
            )
            wheres.append(where)
    except csv.Error as e:
        raise DataError(
            f"{path}, line {parsed + 1}: cannot parse the CSV ({e}). "
            f"Received: csv='{path}'"
        ) from None
    if not texts:
        raise DataError(
            f"{path} has no rows below its header; add one row per example. "
            f"Received: csv='{path}'"
        )
    return texts, labels, wheres


def _read_jsonl(path, text_column, label_column, multi_label, delimiter):
    path, data = _read_bytes(path, "JSON Lines file")
    texts, labels, wheres = [], [], []
    for number, line in enumerate(_decode(data, path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DataError(
                f"{where}: malformed JSON ({e}); write one JSON object per line. "
                f"Received: {line[:120]!r}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{where}: expected a JSON object with '{text_column}' and "
                f"'{label_column}' keys. Received: {line[:120]!r}"
            )
        for key in (text_column, label_column):
            if key not in record:
                raise DataError(
                    f"{where}: the object has no '{key}' key; rename the key or pass "
                    f"text_column=/label_column=. Received: keys={sorted(record)}"
                )
        texts.append(_check_text(record[text_column], where, text_column))
        labels.append(
            _split_label(record[label_column], where, label_column, multi_label, delimiter)
        )
        wheres.append(where)
    if not texts:
        raise DataError(
            f"{path} holds no JSON objects; write one object per line. "
            f"Received: jsonl='{path}'"
        )
    return texts, labels, wheres


def _tfds_label_names(name, feature, label_column, multi_label, features):
    from tensorflow_datasets import features as tfds_features

    if multi_label and isinstance(feature, tfds_features.Sequence):
        feature = feature.feature
    if not isinstance(feature, tfds_features.ClassLabel) or not feature.names:
        expected = "a Sequence of ClassLabel" if multi_label else "a ClassLabel"
        raise DataError(
            f"TFDS dataset '{name}': feature '{label_column}' is not {expected}; pick the "
            f"label feature with label_column=. Received: features={sorted(features)}"
        )
    return list(feature.names)


def _read_tfds(name, split, text_column, label_column, multi_label):
    """Texts (UTF-8 bytes, as stored), class names per example and the class names."""
    import tensorflow_datasets as tfds

    try:
        ds, info = tfds.load(name, split=split, as_supervised=False, with_info=True)
    except tfds.core.registered.DatasetNotFoundError:
        base = name.split("/")[0].split(":")[0]
        close = difflib.get_close_matches(base, tfds.list_builders(), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise DataError(
            f"TensorFlow Datasets has no dataset named '{name}'; check the name with "
            f"`tfds.list_builders()` or the catalog at "
            f"https://www.tensorflow.org/datasets/catalog.{hint} Received: tfds='{name}'"
        ) from None
    except (ValueError, KeyError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"Cannot load TFDS dataset '{name}' split '{split}': {first}. "
            f"Received: tfds='{name}', split='{split}'"
        ) from None
    features = info.features
    for key in (text_column, label_column):
        if key not in features:
            raise DataError(
                f"TFDS dataset '{name}' has no feature '{key}'; pass text_column=/"
                f"label_column=. Received: features={sorted(features)}"
            )
    class_names = _tfds_label_names(
        name, features[label_column], label_column, multi_label, features
    )
    pairs = ds.map(lambda example: (example[text_column], example[label_column]))
    texts, labels = [], []
    for text, label in pairs.as_numpy_iterator():
        texts.append(text)
        indices = np.atleast_1d(label).tolist() if multi_label else [int(label)]
        bad = [i for i in indices if not 0 <= i < len(class_names)]
        if bad:
            raise DataError(
                f"TFDS dataset '{name}' split '{split}', example {len(labels)}: label "
                f"{bad[0]} is not a class index (the split may be unlabelled); use a "
                f"labelled split. Received: classes={class_names}"
            )
        names = tuple(class_names[i] for i in indices)
        labels.append(tuple(dict.fromkeys(names)) if multi_label else names[0])
    if not texts:
        raise DataError(
            f"TFDS dataset '{name}' split '{split}' has no examples. "
            f"Received: tfds='{name}', split='{split}'"
        )
    return texts, labels, class_names


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


def _cache(ds, cache, split, texts, labels):
    if cache is True:
        return ds.cache()
    if not cache:
        return ds
    # TF reuses an existing cache file whatever the input, so the name carries a
    # fingerprint of the examples: other data starts a new cache instead of replaying.
    digest = hashlib.sha1()
    for text in texts:
        digest.update(text if isinstance(text, bytes) else text.encode("utf-8"))
        digest.update(b"\0")
    digest.update(np.ascontiguousarray(labels).tobytes())
    prefix = os.fspath(cache)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    return ds.cache(f"{prefix}-{split}-{digest.hexdigest()[:12]}")


def _check_arguments(
    *, sources_given, batch_size, shuffle_buffer, validation_split, split_needed,
    preprocess, cache, multi_label, label_delimiter, class_weights,
):
    if len(sources_given) != 1:
        raise DataError(
            "Pass exactly one of `path` (a class-per-folder tree of .txt files), `csv`, "
            f"`jsonl` and `tfds`. Received: {', '.join(sources_given) or 'none'}"
        )
    for name, value in (("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise DataError(f"{name} must be a positive int. Received: {name}={value!r}")
    if split_needed and (
        isinstance(validation_split, bool)
        or not isinstance(validation_split, numbers.Real)
        or not 0 < validation_split < 1
    ):
        raise DataError(
            "validation_split must be strictly between 0 and 1, or give a separate "
            f"validation set. Received: validation_split={validation_split!r}"
        )
    if preprocess is not None and not callable(preprocess):
        raise DataError(
            f"preprocess must be a callable or None. Received: preprocess={preprocess!r}"
        )
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise DataError(
            "cache must be True (memory), False or a file path prefix. "
            f"Received: cache={cache!r}"
        )
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

    if kind == "path":
        texts, labels, wheres, class_names = _read_folder(source)
        if validation_path is not None:
            val_texts, val_labels, val_wheres, _ = _read_folder(validation_path)
    elif kind == "tfds":
        texts, labels, class_names = _read_tfds(source, tfds_split[0], *columns[:3])
        wheres = [f"TFDS '{source}' split '{tfds_split[0]}'"] * len(texts)
        if len(class_names) < 2:
            raise DataError(
                f"TFDS dataset '{source}' has only {len(class_names)} class: a "
                f"classifier needs at least two. Received: classes={class_names}"
            )
        if tfds_split[1]:
            val_texts, val_labels, _ = _read_tfds(source, tfds_split[1], *columns[:3])
            val_wheres = [f"TFDS '{source}' split '{tfds_split[1]}'"] * len(val_texts)
    else:
        read = _read_csv if kind == "csv" else _read_jsonl
        texts, labels, wheres = read(source, *columns)
        class_names = _class_names(labels, multi_label, source)
        if validation_path is not None:
            val_texts, val_labels, val_wheres = read(validation_path, *columns)

    encoded, strata = _encode_labels(labels, wheres, class_names, multi_label, label_column)
    if val_texts is not None:
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

    train = _cache(
        _slices(train_texts, train_encoded), cache, "train", train_texts, train_encoded
    )
    buffer = min(int(shuffle_buffer), len(train_texts))
    train = train.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    train = train.batch(int(batch_size))
    val_examples = _cache(
        _slices(val_texts, val_encoded), cache, "validation", val_texts, val_encoded
    )
    validation = val_examples.batch(int(batch_size))
    if preprocess is not None:
        train = train.map(
            lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE
        )
        validation = validation.map(
            lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    if cache is not True:
        # A file cache cannot be read by two iterators while it is being written.
        val_examples = _slices(val_texts, val_encoded)

    return Datasets(
        train=train.prefetch(tf.data.AUTOTUNE),
        validation=validation.prefetch(tf.data.AUTOTUNE),
        class_names=list(class_names),
        class_weights=weights,
        num_train=len(train_texts),
        num_validation=len(val_texts),
        validation_examples=val_examples,
        multi_label=bool(multi_label),
    )
