"""`tfft predict RUN|EXPORT INPUT...`: top-k classes of new files, from a run directory or
an exported SavedModel.

A run directory is served exactly as `tfft export` would serve it (the same raw-input
function, built in memory); an export directory is loaded with `tf.saved_model.load`.
Folders are searched for the modality's files; inputs are batched through `tf.data`.

Example:
    >>> rows = predict("runs/mri", ["~/new_scans"], k=2)
    >>> rows[0]["top"]      # [("glioma", 0.91), ("none", 0.06)]
"""

import os

from tfft.errors import DataError, TfftError

BATCH = 32


def is_export(path):
    return os.path.isfile(os.path.join(os.path.expanduser(str(path)), "saved_model.pb"))


def predict(source, inputs, k=3, batch_size=BATCH, progress=None):
    """Predict each file of `inputs`; return one row per file, in the order given.

    Args:
        source: a finished run directory or a `tfft export` SavedModel directory.
        inputs: files and folders (searched recursively for the modality's files).
        k: how many classes to list per file.
        batch_size: files per batch.
        progress: None, or `progress(done, total)`, called after each batch when there is
            more than one.

    Returns:
        `[{"input": path, "top": [(class_name, probability), ...]}, ...]`.
    """
    import tensorflow as tf

    if is_export(source):
        loaded = tf.saved_model.load(os.path.expanduser(str(source)))
        served = loaded.signatures.get("serving_wav") or loaded.signatures["serving_default"]
        (argument, spec), = served.structured_input_signature[1].items()
        if spec.dtype != tf.string:
            raise TfftError(f"{source} takes {spec.dtype.name} inputs, not files.")
        extensions = (".wav",) if argument == "wav_bytes" else (".jpg", ".jpeg", ".png", ".bmp", ".gif")
        read = tf.io.read_file
        call = lambda batch: served(**{argument: batch})  # noqa: E731
    else:
        from tfft.export import load_run_serving, output_function

        _, serving, model, class_names = load_run_serving(source)
        features = serving.file_features or serving.features
        outputs = tf.function(lambda batch: output_function(model, class_names, k=max(k, 1))(features(batch)))
        extensions, read, call = serving.extensions, serving.read, outputs
    files = list_inputs(inputs, extensions)
    rows = []
    for names, batch in zip(_batches(files, batch_size), tf.data.Dataset.from_tensor_slices(files)
                            .map(read, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)):
        try:
            out = call(batch)
        except tf.errors.InvalidArgumentError as error:
            raise DataError(f"Cannot decode one of {names[0]} ... {names[-1]}: {error.message.splitlines()[0]}") from None
        probabilities = out["probabilities"].numpy()
        labels = [[n.decode("utf-8") for n in row] for row in out["top_names"].numpy()]
        for name, p, top, label in zip(names, probabilities, out["top_classes"].numpy(), labels):
            rows.append(dict(input=name, top=[(label[j], float(p[top[j]])) for j in range(min(k, len(top)))]))
        if progress is not None and len(files) > batch_size:
            progress(len(rows), len(files))
    return rows


def list_inputs(inputs, extensions):
    """Files of `inputs` as given, folders expanded to their files with `extensions` in
    sorted order; a missing path or an empty result is a `DataError` naming it."""
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
    if not files:
        raise DataError("No inputs given.")
    return files


def _batches(files, size):
    return [files[i:i + size] for i in range(0, len(files), size)]
