"""`tfft evaluate RUN --data PATH`: score a finished run's model on a labelled data set.

The data go through the run's own pipeline (its recipe, modality and preprocessing), with
no augmentation and in a fixed order. The results land in `RUN/evaluations/<name>/`:
`metrics.json` (accuracy, macro and per-class precision, recall and F1, the confusion
matrix, the expected calibration error with its reliability table, and drift against the
run's validation predictions), `confusion_matrix.png` and `reliability.png`; the same
figures go to TensorBoard as the run `evaluation-<name>`.

Example:
    >>> report = evaluate_run("runs/mri", "~/mri/test")
    >>> report["accuracy"], report["drift"]["class_prior_shift"]
"""

import dataclasses
import json
import os
import re

import numpy as np

from tfft import evaluation
from tfft.errors import DataError, TfftError


def evaluation_name(data):
    """The folder name of an evaluation of `data`: its last path part, made safe."""
    base = os.path.basename(os.path.normpath(os.path.expanduser(str(data)))) or "data"
    return re.sub(r"[^\w.-]+", "_", os.path.splitext(base)[0] if os.path.isfile(os.path.expanduser(str(data))) else base)


def evaluate_run(run_dir, data, name=None, batch_size=None, verbose=0):
    """Evaluate `RUN/model.keras` on the labelled `data`; return the report it writes.

    Args:
        run_dir: a finished run directory (`metrics.json`, `model.keras`, `recipe.json`).
        data: what the run's modality reads as labelled data: a class-per-folder tree, a
            CSV manifest (for text also a JSON-lines file) with the run's columns, or a
            TFDS split as `tfds:NAME:SPLIT`.
        name: the evaluation's folder name under `RUN/evaluations/` (default: from `data`).
        batch_size: examples per batch (default: the run's `data.batch_size`).

    Raises:
        TfftError: not a finished run, data the modality cannot read, labels the run does
            not know (named).
    """
    import keras

    import tfft  # noqa: F401  (registers tfft's layers for text models)
    from tfft import tasks
    from tfft.model_file import read_metadata
    from tfft.recipe import recipe_from_run

    run_dir = os.path.expanduser(str(run_dir))
    model_path = os.path.join(run_dir, "model.keras")
    metrics_path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(model_path) or not os.path.isfile(metrics_path):
        raise TfftError(f"{run_dir} holds no finished run (no model.keras and metrics.json): "
                        "train it with tfft run, or finish it with tfft resume.")
    with open(metrics_path, encoding="utf-8") as file:
        trained = json.load(file)
    recipe = recipe_from_run(run_dir)
    if recipe.data.multi_label:
        raise TfftError("tfft evaluate scores single-label runs; this run is multi-label (data.multi_label=True).")
    metadata = read_metadata(model_path) or {}
    run_classes = list(metadata.get("class_names") or trained.get("class_names") or [])
    datasets = labelled_datasets(recipe, metadata, run_dir, data, batch_size)
    unknown = [c for c in datasets.class_names if c not in run_classes]
    if unknown:
        raise DataError(f"{data} holds labels the run was not trained on: {unknown}. The run's classes: {run_classes}")
    model = keras.models.load_model(model_path)
    labels, logits = evaluation.predict_outputs(model, datasets.validation)
    report = tasks.of(recipe.data).evaluation(labels, logits, datasets, run_classes, trained)
    report["data"] = str(data)
    report["split"] = "evaluation"
    name = name or evaluation_name(data)
    out = os.path.join(run_dir, "evaluations", name)
    _write(out, report, run_dir, name)
    return report


def labelled_datasets(recipe, metadata, run_dir, data, batch_size=None):
    """`Datasets` whose validation split is every example of `data`, made by the run's own
    pipeline: its trainer class (so a recipe's `build_datasets` hook, and its
    `build_backbone` hook, preprocess as in training; the backbone is built for its
    preprocessing only, no weights loaded; a text run's tokenizer comes from `model.keras`,
    which holds the one it trained with) and the normalisation statistics saved in
    `model.keras` (`metadata`), not statistics of `data`."""
    from tfft.export import run_backbone
    from tfft.trainer import Trainer

    recipe = dataclasses.replace(recipe, data=_data_config(recipe.data, data, batch_size))
    trainer = (recipe.trainer or Trainer)(recipe, out_dir=run_dir, verbose=0, dry_run=True, save=False)
    trainer.backbone = run_backbone(trainer, os.path.join(run_dir, "model.keras"))
    trainer.statistics = metadata.get("statistics")
    return trainer.build_datasets()


def _data_config(config, data, batch_size):
    """The run's `data` section with `data` as the only source, every example in the
    validation split (read twice over is cheaper than a second pipeline), no augmentation.
    `tfds:NAME:SPLIT` (or `tfds:NAME`, the `test` split) names a TFDS split."""
    from tfft.modalities import get

    sources = dict.fromkeys(("path", "manifest", "tfds") + tuple(get(config.kind).sources))
    if str(data).startswith("tfds:"):
        # NAME may carry a version (`mnist:3.0.1`), SPLIT a slice (`test[:50%]`).
        match = re.fullmatch(r"tfds:(?P<name>[^:\[]+(?::\d[\w.*]*)?)(?::(?P<split>.+))?", str(data))
        if match is None:
            raise DataError(f"A TFDS split is given as tfds:NAME:SPLIT, e.g. tfds:speech_commands:test. Received: {data}")
        name, split = match["name"], match["split"] or "test"
        sources.update(validation_path=None)
        sources.update(get(config.kind).labelled_tfds(name, split))
    else:
        path = os.path.expanduser(str(data))
        if not os.path.exists(path):
            raise DataError(f"Evaluation data not found: {data}")
        sources.update(validation_path=path)
        sources.update(get(config.kind).labelled_source(path, str(data)))
    changes = dict(sources, holdout=None, synthetic=None, verify=False, cache=False, on_error="raise",
                   class_weights=None, augment={}, batch_size=batch_size or config.batch_size)
    return dataclasses.replace(config, **changes)


def evaluation_lines(report):
    """What `tfft evaluate` prints of `report`: the task's table and summary lines."""
    from tfft import tasks

    return tasks.get(report.get("task", "classify")).evaluation_lines(report)


def _write(out, report, run_dir, name):
    import tensorflow as tf

    from tfft.callbacks.tensorboard import TensorBoardLogger

    os.makedirs(out, exist_ok=True)
    confusion = evaluation.confusion_matrix_figure(np.asarray(report["confusion_matrix"]), report["class_names"],
                                                   f"Confusion matrix: {name}")
    reliability = evaluation.reliability_figure(report["reliability"], f"Reliability: {name} (ECE {report['ece']:.3f})")
    for file, image in (("confusion_matrix.png", confusion), ("reliability.png", reliability)):
        tf.io.write_file(os.path.join(out, file), tf.io.encode_png(image))
    evaluation.write_json(os.path.join(out, "metrics.json"), report)
    logger = TensorBoardLogger(os.path.join(run_dir, "tensorboard"))
    logger.log_evaluation(f"evaluation-{name}", report, confusion, reliability, "\n".join(evaluation_lines(report)))
    logger.close()
