"""Find labelled files on disk and split them, whatever the modality.

Images, text and audio all arrive the same two ways: a class-per-folder tree or a CSV
manifest of `path,label` rows. This module turns either into parallel lists of file paths
and integer labels, splits them per class and computes class weights. Decoding is left to
the modality builders (`tfft/modalities/image/pipeline.py`, `tfft/modalities/audio/pipeline.py`).
"""

import csv
import math
import numbers
import os
from typing import NamedTuple

import numpy as np

from tfft.data.checks import is_fraction
from tfft.errors import DataError


def _normalize_extensions(extensions):
    if isinstance(extensions, str):
        extensions = (extensions,)
    normalized = []
    for extension in extensions:
        if not isinstance(extension, str) or not extension.strip("."):
            raise DataError(
                "File extensions must be non-empty strings such as '.png'. "
                f"Received: extensions={extensions!r}"
            )
        extension = extension.lower()
        normalized.append(extension if extension.startswith(".") else "." + extension)
    return tuple(normalized)


def _is_hidden(name):
    return name.startswith(".")


def _walk_files(folder, extensions):
    """All matching files under `folder`, sorted, hidden files and folders skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        # Pruning in place keeps os.walk out of `.git`, `.ipynb_checkpoints` and the like.
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(files):
            if not _is_hidden(name) and name.lower().endswith(extensions):
                found.append(os.path.join(root, name))
    return found


def list_class_folders(path, extensions):
    """List the files of a class-per-folder tree.

    Each non-hidden sub-folder of `path` is a class; every file below it whose name ends
    with one of `extensions` (case-insensitive) is an example of that class. Class names
    are sorted so that label `i` is always the `i`-th folder name in alphabetical order.
    Class folders without a matching file are skipped.

    Args:
        path: the root folder, holding one sub-folder per class.
        extensions: file name endings to keep, e.g. `(".jpg", ".png")`.

    Returns:
        `(paths, labels, class_names)`: file paths, their integer labels (indices into
        `class_names`) and the sorted class names.

    Raises:
        DataError: the folder is missing, is not a folder, holds no matching files, or
            holds matching files for fewer than two classes.

    Example:
        >>> paths, labels, names = list_class_folders("data/pets", (".jpg", ".png"))
        >>> names
        ['cat', 'dog']
    """
    extensions = _normalize_extensions(extensions)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(
            f"Data folder {path} does not exist: check the path, or create it with one "
            f"sub-folder per class. Received: path='{path}'"
        )
    if not os.path.isdir(path):
        raise DataError(
            f"{path} is a file, not a folder: pass a folder holding one sub-folder per "
            f"class (or pass a CSV as a manifest instead). Received: path='{path}'"
        )
    folders = sorted(
        name
        for name in os.listdir(path)
        if not _is_hidden(name) and os.path.isdir(os.path.join(path, name))
    )
    paths, labels, class_names = [], [], []
    for name in folders:
        files = _walk_files(os.path.join(path, name), extensions)
        if not files:
            continue
        paths.extend(files)
        labels.extend([len(class_names)] * len(files))
        class_names.append(name)

    wanted = "/".join(extensions)
    if not paths:
        loose = [
            name
            for name in os.listdir(path)
            if not _is_hidden(name) and name.lower().endswith(extensions)
        ]
        if loose:
            raise DataError(
                f"Found {len(loose)} {wanted} files directly in {path} but no class "
                f"sub-folders: move them into one sub-folder per class. "
                f"Received: path='{path}'"
            )
        raise DataError(
            f"No files found in {path}: expected one sub-folder per class holding "
            f"{wanted} files. Received: path='{path}'"
        )
    if len(class_names) < 2:
        raise DataError(
            f"Found {wanted} files for only {len(class_names)} class in {path}: a "
            f"classifier needs at least two class sub-folders with files. "
            f"Received: path='{path}', classes={class_names}"
        )
    return paths, labels, class_names


def _sort_label_names(names):
    # Integer-like labels ("2", "10") sort as numbers so that "10" does not land before "2".
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def read_manifest(csv_path, path_column="path", label_column="label", class_names=None):
    """Read a CSV manifest of labelled files.

    The CSV has a header row naming at least `path_column` and `label_column`. Relative
    paths resolve against the folder that holds the CSV, so a manifest can travel with its
    data. Without `class_names`, the classes are the distinct labels, sorted (numerically
    when every label is an integer).

    Args:
        csv_path: the CSV file.
        path_column: header of the column holding file paths.
        label_column: header of the column holding class names.
        class_names: optional fixed list of class names, e.g. those of the training
            manifest when reading a validation manifest. Every label must be one of them.

    Returns:
        `(paths, labels, class_names)` as in `list_class_folders`, in the CSV's row order.

    Raises:
        DataError: the CSV is missing or empty, lacks a column, or a row has an empty path
            or label, names a missing file, or has a label outside `class_names`. The
            message names the CSV and the line.

    Example:
        >>> paths, labels, names = read_manifest("data/train.csv")
        >>> paths[0], names[labels[0]]
        ('/data/images/0001.png', 'glioma')
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise DataError(
            f"Manifest {csv_path} does not exist or is not a file: pass a CSV with a "
            f"'{path_column},{label_column}' header. Received: manifest='{csv_path}'"
        )
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if len(class_names) < 2 or len(set(class_names)) != len(class_names):
            raise DataError(
                "`class_names` must hold at least two distinct names. "
                f"Received: class_names={class_names}"
            )
    base = os.path.dirname(os.path.abspath(csv_path))
    rows = []
    # utf-8-sig drops the byte-order mark that spreadsheet programs put before the header.
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in (path_column, label_column):
            if column not in header:
                raise DataError(
                    f"{csv_path}, line 1: the header has no '{column}' column; rename "
                    f"the column or pass path_column=/label_column=. "
                    f"Received: columns={header}"
                )
        for row in reader:
            where = f"{csv_path}, line {reader.line_num}"
            file_path = (row.get(path_column) or "").strip()
            label = (row.get(label_column) or "").strip()
            if not file_path:
                raise DataError(
                    f"{where}: the '{path_column}' cell is empty; every row needs a "
                    f"file path. Received: row={row}"
                )
            if not label:
                raise DataError(
                    f"{where}: the '{label_column}' cell is empty; every row needs a "
                    f"class name. Received: row={row}"
                )
            resolved = os.path.join(base, os.path.expanduser(file_path))
            if not os.path.isfile(resolved):
                raise DataError(
                    f"{where}: file {resolved} does not exist; fix the path (relative "
                    f"paths resolve against the CSV's folder). Received: "
                    f"{path_column}='{file_path}'"
                )
            rows.append((os.path.normpath(resolved), label, reader.line_num))

    if not rows:
        raise DataError(
            f"Manifest {csv_path} has a header but no rows: add one row per file. "
            f"Received: manifest='{csv_path}'"
        )
    if class_names is None:
        class_names = _sort_label_names({label for _, label, _ in rows})
        if len(class_names) < 2:
            raise DataError(
                f"Manifest {csv_path} names only {len(class_names)} class: a classifier "
                f"needs at least two. Received: classes={class_names}"
            )
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for file_path, label, line in rows:
        if label not in index:
            raise DataError(
                f"{csv_path}, line {line}: label '{label}' is not a known class; use "
                f"one of {class_names}. Received: {label_column}='{label}'"
            )
        paths.append(file_path)
        labels.append(index[label])
    return paths, labels, list(class_names)


def stratified_split(labels, fraction, seed):
    """Split example indices into training and validation, class by class.

    Each class contributes `round(count * fraction)` examples to validation, clamped so
    that a class with two or more examples has at least one on each side (a class with a
    single example stays in training). The draw is seeded: the same labels, fraction and
    seed always give the same split.

    Args:
        labels: integer label per example.
        fraction: share of each class that goes to validation, strictly between 0 and 1.
        seed: integer seed.

    Returns:
        `(train_idx, val_idx)`: sorted `int64` numpy arrays of indices into `labels`.

    Example:
        >>> train_idx, val_idx = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], 0.25, seed=0)
        >>> len(train_idx), len(val_idx)
        (6, 2)
    """
    if not is_fraction(fraction):
        raise DataError(
            "The validation fraction must be a number strictly between 0 and 1, e.g. "
            f"0.2. Received: fraction={fraction!r}"
        )
    labels = np.asarray(labels)
    if labels.size == 0:
        raise DataError(
            f"Cannot split an empty list of labels. Received: labels={labels.tolist()}"
        )
    rng = np.random.default_rng(seed)
    train_parts, val_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = len(members)
        n_val = int(round(count * fraction))
        n_val = min(max(n_val, 1), count - 1) if count >= 2 else 0
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train_idx = np.sort(np.concatenate(train_parts)).astype(np.int64)
    val_idx = np.sort(np.concatenate(val_parts)).astype(np.int64)
    return train_idx, val_idx


def drop_files(split, bad):
    """`split` without the files in `bad` (a set of paths): what `data.on_error="skip"` keeps."""
    keep = [(p, l) for p, l in zip(split.train_paths, split.train_labels) if p not in bad]
    keep_val = [(p, l) for p, l in zip(split.val_paths, split.val_labels) if p not in bad]
    return FileSplit([p for p, _ in keep], [l for _, l in keep], [p for p, _ in keep_val], [l for _, l in keep_val],
                     split.class_names, split.source, [p for p in split.all_paths if p not in bad])


def check_on_error(on_error):
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip'. Received: on_error={on_error!r}")


def holdout_split(labels, fraction, seed, source="the training split"):
    """Hold out a stratified `fraction` of each class of a training split, for choices made
    on training data (`data.holdout`). Its seed differs from the validation split's, so the
    fold is not a copy of a split made earlier with the same fraction.

    Example:
        >>> fit, held = holdout_split([0, 0, 0, 0, 1, 1, 1, 1], 0.25, seed=0)
        >>> len(fit), len(held)
        (6, 2)
    """
    if not is_fraction(fraction):
        raise DataError(f"data.holdout must be a fraction between 0 and 1. Received: data.holdout={fraction!r}")
    fit_idx, held_idx = stratified_split(labels, fraction, seed + 104729)
    if len(held_idx) == 0:
        raise DataError(
            "Holding out part of the training split left nothing to hold out: every class has a single "
            f"training example. Received: {source}, num_examples={len(labels)}"
        )
    return fit_idx, held_idx


class FileSplit(NamedTuple):
    """Training and validation files of a data set, as `split_files` returns them."""

    train_paths: list
    train_labels: list
    val_paths: list
    val_labels: list
    class_names: list
    source: str  # the folder or manifest argument, as error messages name it
    all_paths: list  # every file, training source first, in listing order


def split_files(path, manifest, validation_path, validation_split, seed, extensions, holdout=None):
    """List a class-per-folder tree or a manifest and split it into training and validation.

    Exactly one of `path` and `manifest` is given. With `validation_path`, that folder is
    the validation split and must hold the same classes; otherwise each class is split by
    `stratified_split(labels, validation_split, seed)`.

    With `holdout`, the validation split is neither used nor read (`validation_path` is not
    even listed): the training split is split again, by `holdout_split`, and its held-out
    fold takes the validation's place. That is how choices are made on training data only.

    Args:
        path: class-per-folder tree, or None.
        manifest: CSV manifest, or None.
        validation_path: optional class-per-folder tree (or CSV manifest) used as the
            validation split.
        validation_split: share of each class held out when there is no validation_path.
        seed: integer seed of the split.
        extensions: file name endings of the class folders, e.g. `(".wav",)`.
        holdout: None, or the share of each class of the training split to hold out.

    Returns:
        A `FileSplit`.

    Raises:
        DataError: as `list_class_folders` and `read_manifest`, when the validation folder
            has other classes, or when the split leaves no validation example.

    Example:
        >>> split = split_files("data/pets", None, None, 0.2, 0, (".jpg",))
        >>> split.class_names
        ['cat', 'dog']
    """
    if path is not None:
        paths, labels, class_names = list_class_folders(path, extensions)
        source = f"path='{path}'"
    else:
        paths, labels, class_names = read_manifest(manifest)
        source = f"manifest='{manifest}'"
    if holdout is not None:
        if validation_path is None:
            train_idx, _ = stratified_split(labels, validation_split, seed)
            paths, labels = [paths[i] for i in train_idx], [labels[i] for i in train_idx]
        fit_idx, held_idx = holdout_split(labels, holdout, seed, source)
        return FileSplit(
            [paths[i] for i in fit_idx], [labels[i] for i in fit_idx],
            [paths[i] for i in held_idx], [labels[i] for i in held_idx],
            class_names, source, paths,
        )
    if validation_path is not None:
        if str(validation_path).lower().endswith(".csv"):
            val_paths, val_labels, val_names = read_manifest(validation_path)
        else:
            val_paths, val_labels, val_names = list_class_folders(validation_path, extensions)
        if val_names != class_names:
            missing = sorted(set(class_names) - set(val_names))
            extra = sorted(set(val_names) - set(class_names))
            raise DataError(
                f"The validation folder {validation_path} has other classes than the "
                f"training data: missing {missing}, extra {extra}. Give both the same "
                f"class sub-folders. Received: validation_path='{validation_path}'"
            )
        return FileSplit(
            paths, labels, val_paths, val_labels, class_names, source, paths + val_paths
        )
    train_idx, val_idx = stratified_split(labels, validation_split, seed)
    if len(val_idx) == 0:
        raise DataError(
            "The split left no validation examples because every class has a single "
            "example; add examples or pass validation_path. "
            f"Received: {source}, num_examples={len(paths)}"
        )
    return FileSplit(
        [paths[i] for i in train_idx],
        [labels[i] for i in train_idx],
        [paths[i] for i in val_idx],
        [labels[i] for i in val_idx],
        class_names,
        source,
        paths,
    )


def class_weights(labels, num_classes, mode, class_names=None):
    """Per-class loss weights for `keras.Model.fit(class_weight=...)`.

    Args:
        labels: integer training labels.
        num_classes: number of classes.
        mode: None for no weighting; `"balanced"` for `n / (num_classes * count_c)`, which
            gives every class the same total weight; or a dict `{class: weight}` keyed by
            class index or class name, where classes left out get weight 1.0.
        class_names: the class names, needed only when `mode` is keyed by name.

    Returns:
        None, or a dict `{class_index: float_weight}` covering every class.

    Example:
        >>> class_weights([0, 0, 0, 1], 2, "balanced")
        {0: 0.6666666666666666, 1: 2.0}
        >>> class_weights([0, 1], 2, {"dog": 3}, class_names=["cat", "dog"])
        {0: 1.0, 1: 3.0}
    """
    if mode is None:
        return None
    if isinstance(mode, str):
        if mode != "balanced":
            raise DataError(
                "class_weights must be None, 'balanced' or a dict {class: weight}. "
                f"Received: class_weights={mode!r}"
            )
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
        empty = [
            class_names[i] if class_names else i
            for i in range(num_classes)
            if counts[i] == 0
        ]
        if empty:
            raise DataError(
                "class_weights='balanced' needs at least one training example per "
                f"class; add examples or pass an explicit dict. Received: classes "
                f"without examples={empty}"
            )
        total = float(counts.sum())
        return {i: total / (num_classes * float(counts[i])) for i in range(num_classes)}
    if not isinstance(mode, dict):
        raise DataError(
            "class_weights must be None, 'balanced' or a dict {class: weight}. "
            f"Received: class_weights={mode!r}"
        )
    weights = {i: 1.0 for i in range(num_classes)}
    seen = {}
    for key, weight in mode.items():
        if isinstance(key, str) and class_names is not None and key in class_names:
            index = class_names.index(key)
        elif isinstance(key, numbers.Integral) and not isinstance(key, bool):
            index = int(key)
            if not 0 <= index < num_classes:
                raise DataError(
                    f"class_weights key {key} is out of range for {num_classes} classes; "
                    f"use 0..{num_classes - 1}. Received: class_weights={mode!r}"
                )
        else:
            valid = list(class_names) if class_names else list(range(num_classes))
            raise DataError(
                f"class_weights key {key!r} is not a class; use one of {valid}. "
                f"Received: class_weights={mode!r}"
            )
        if index in seen:
            raise DataError(
                f"class_weights names class {index} twice (as {seen[index]!r} and "
                f"{key!r}); keep one. Received: class_weights={mode!r}"
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, numbers.Real)
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise DataError(
                f"class_weights[{key!r}] must be a finite number >= 0. "
                f"Received: class_weights={mode!r}"
            )
        seen[index] = key
        weights[index] = float(weight)
    return weights
