"""Readers of labelled texts: class-per-folder `.txt` trees, CSV, JSON Lines and TFDS.

Each reader loads a whole source into memory and checks it as it goes (UTF-8, no empty
texts, the text and label columns present, labels that are class names), raising a
`DataError` that names the file and line. `read_folder`, `read_csv` and `read_jsonl`
return the texts, a class name per example (a tuple of names when multi-label) and where
each example comes from, for messages; `read_tfds` returns the texts, the class names per
example and the class names of the dataset's `ClassLabel`. `tfft/modalities/text/pipeline.py` encodes
the labels, splits the examples and builds the pipelines.
"""

import csv
import io
import json
import numbers
import os

import numpy as np

from tfft.data import sources
from tfft.errors import DataError

TEXT_EXTENSIONS = (".txt",)


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


def read_folder(path, skipped=None):
    """A class-per-folder tree of `.txt` files, one example per file.

    Returns `(texts, labels, file_paths, class_names)`: a class name per example, and the
    class names sorted (numerically when they are all integers). With a `skipped` list,
    a file that is not UTF-8 or holds no text is left out and appended to it as
    `(path, reason)` instead of raising.
    """
    paths, labels, class_names = sources.list_class_folders(path, TEXT_EXTENSIONS)
    texts, kept_paths, kept_labels = [], [], []
    for file_path, label in zip(paths, labels):
        try:
            with open(file_path, "rb") as f:
                text = _decode(f.read(), file_path).strip()
            if not text:
                raise DataError(
                    f"{file_path}: the file is empty or only whitespace; every file must hold "
                    f"one example's text. Received: file='{file_path}'"
                )
        except DataError as error:
            if skipped is None:
                raise
            skipped.append((file_path, str(error)))
            continue
        texts.append(text)
        kept_paths.append(file_path)
        kept_labels.append(label)
    names = [class_names[label] for label in kept_labels]
    # Like the other sources, integer-named class folders sort as numbers.
    return texts, names, kept_paths, sources._sort_label_names(class_names)


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


def read_csv(path, text_column, label_column, multi_label, delimiter):
    """A UTF-8 CSV with a header naming `text_column` and `label_column`.

    Returns `(texts, labels, wheres)`: a class name (a tuple if multi-label) and the file
    and line of each example.
    """
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


def jsonl_records(path):
    """A JSON Lines file's path as given and `(where, record, line)` for each of its
    non-blank lines, `where` naming the file and the line for errors.

    Raises:
        DataError: the file cannot be read or decoded, or a line is not JSON.
    """
    path, data = _read_bytes(path, "JSON Lines file")

    def records():
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
            yield where, record, line

    return path, records()


def read_jsonl(path, text_column, label_column, multi_label, delimiter):
    """UTF-8 JSON Lines, one object per line with `text_column` and `label_column` keys.

    Returns `(texts, labels, wheres)` as `read_csv` does.
    """
    path, records = jsonl_records(path)
    texts, labels, wheres = [], [], []
    for where, record, line in records:
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


def read_tfds(name, split, text_column, label_column, multi_label):
    """Texts (UTF-8 bytes, as stored), class names per example and the class names."""
    import tensorflow_datasets as tfds

    try:
        ds, info = tfds.load(name, split=split, as_supervised=False, with_info=True)
    except tfds.core.registered.DatasetNotFoundError:
        from tfft.data.tfds_files import unknown_name

        raise unknown_name(tfds, name) from None
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
