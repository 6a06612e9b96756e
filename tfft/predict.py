"""`tfft predict RUN|EXPORT INPUT...`: top-k classes of new inputs, from a run directory or
an exported SavedModel.

A run directory is served exactly as `tfft export` would serve it (the same raw-input
function, built in memory); an export directory is loaded with `tf.saved_model.load`.
What an INPUT may be is the modality's business (`Modality.collect_inputs`): files and
folders of images or recordings; for text also CSV and JSON-lines files and `-` for lines
on stdin. Inputs are batched through `tf.data`.

Example:
    >>> rows = predict("runs/mri", ["~/new_scans"], k=2)
    >>> rows[0]["top"]      # [("glioma", 0.91), ("none", 0.06)]
"""

import os

from tfft.errors import DataError, TfftError

BATCH = 32


def is_export(path):
    return os.path.isfile(os.path.join(os.path.expanduser(str(path)), "saved_model.pb"))


def predict(source, inputs, k=3, batch_size=BATCH, progress=None, stdin=None):
    """Predict each input; return one row per input, in the order given.

    Args:
        source: a finished run directory or a `tfft export` SavedModel directory.
        inputs: what the modality reads (files, folders searched recursively, for text
            CSV / JSON-lines files and `-`).
        k: how many classes to list per input.
        batch_size: inputs per batch.
        progress: None, or `progress(done, total)`, called after each batch when there is
            more than one.
        stdin: the stream `-` reads (default `sys.stdin`).

    Returns:
        `[{"input": name, "top": [(class_name, probability), ...]}, ...]` (the task's rows,
        `Task.rows`: for tags `{"input", "entities", "cut_words"}`).
    """
    import tensorflow as tf

    from tfft import modalities, tasks

    if is_export(source):
        loaded = tf.saved_model.load(os.path.expanduser(str(source)))
        served = loaded.signatures.get("serving_wav") or loaded.signatures["serving_default"]
        (argument, spec), = served.structured_input_signature[1].items()
        kinds = [kind for kind in modalities.KINDS if modalities.get(kind).file_argument == argument]
        if spec.dtype != tf.string or not kinds:
            raise TfftError(f"{source} is not a tfft export: its serving signature takes '{argument}'.")
        modality, recipe = modalities.get(kinds[0]), None
        task = tasks.of_outputs(served.structured_outputs)
        call = lambda batch: served(**{argument: batch})  # noqa: E731
    else:
        from tfft.export import load_run_serving

        recipe, serving, model, class_names = load_run_serving(source)
        modality, task = modalities.get(recipe.data.kind), tasks.of(recipe.data)
        features = serving.file_features or serving.features
        outputs = task.serving_outputs(model, class_names, k=max(k, 1))
        call = tf.function(lambda batch: outputs(features(batch)))
    names, values = modality.collect_inputs(inputs, recipe, stdin)
    if not names:
        raise DataError("No inputs given.")
    rows = []
    batches = tf.data.Dataset.from_tensor_slices(values).batch(batch_size)
    for start, batch in zip(range(0, len(names), batch_size), batches):
        shown = names[start:start + batch_size]
        try:
            out = call(batch)
        except tf.errors.InvalidArgumentError as error:
            raise DataError(f"Cannot read one of {shown[0]} ... {shown[-1]}: {error.message.splitlines()[0]}") from None
        rows += task.rows(shown, {key: value.numpy() for key, value in out.items()}, k)
        if progress is not None and len(names) > batch_size:
            progress(len(rows), len(names))
    return rows


def list_inputs(inputs, extensions):
    """Files of `inputs` as given, folders expanded to their files with `extensions` in
    sorted order; a missing path or an empty folder is a `DataError` naming it."""
    files = []
    for given in inputs:
        path = os.path.expanduser(str(given))
        if os.path.isdir(path):
            found = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names
                           if name.lower().endswith(tuple(extensions)))
            if not found:
                raise DataError(f"No {'/'.join(extensions)} files in {given}")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise DataError(f"Input not found: {given}")
    return files


def file_contents(inputs, extensions):
    """`(names, contents)` of the files `list_inputs` finds: what image and audio exports take."""
    files = list_inputs(inputs, extensions)
    contents = []
    for path in files:
        with open(path, "rb") as file:
            contents.append(file.read())
    return files, contents
