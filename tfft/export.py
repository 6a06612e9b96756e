"""`tfft export RUN`: the run's model as a SavedModel that takes raw inputs, or TFLite.

The SavedModel's `serving_default` takes what a user has (encoded image bytes, for
images), runs the preprocessing of the run's validation pipeline and the model, and returns
`probabilities` `[n, classes]`, `top_classes` `[n, k]` (indices, best first) and
`top_names` `[n, k]` (their class names); `labels.txt` beside it lists the classes, one per
line, in index order. What it returns is the task's (`Task.serving_outputs`): a text run
with `data.task="tokens"` returns entity spans on the raw text instead. It loads with
TensorFlow alone (`tf.saved_model.load`, TF Serving).
TFLite takes the modality's numeric input (RGB pixels at the training size for images) and
returns the probabilities.

Example:
    >>> export_run("runs/mri")                      # runs/mri/export/saved_model/
    >>> export_run("runs/mri", format="tflite")     # runs/mri/export/model.tflite
"""

import dataclasses
import json
import os
import shutil
from typing import Callable, Optional

from tfft.errors import TfftError

FORMATS = ("saved_model", "tflite")
TOP_K = 5


@dataclasses.dataclass
class Serving:
    """How an exported model takes raw inputs (`Modality.serving`).

    Args:
        signature: the SavedModel's input `tf.TensorSpec`s (named: the keyword arguments
            of `serving_default`).
        features: a TF function of those inputs returning the model's input batch.
        lite_signature: the TFLite model's input specs, or None if TFLite is not offered.
        lite_features: a TF function of those inputs returning the model's input batch.
        lite_refusal: why TFLite is not offered, for the error.
        file_features: the function of a batch of file contents, for `tfft predict`, when
            `features` takes something else (default `features`).
        file_signature: the exported signature that takes file contents.
        extra: more signatures of the SavedModel, `{name: (input specs, features)}`.
        track: TensorFlow resources the features use besides the model (lookup tables of
            a tokenizer), for the SavedModel to save.
    """

    signature: list
    features: Callable
    lite_signature: Optional[list] = None
    lite_features: Optional[Callable] = None
    lite_refusal: str = ""
    file_features: Optional[Callable] = None
    file_signature: str = "serving_default"
    extra: dict = dataclasses.field(default_factory=dict)
    track: list = dataclasses.field(default_factory=list)


def export_run(run_dir, format="saved_model", out=None, verbose=0):
    """Export `RUN/model.keras` with its preprocessing; return the path written.

    Args:
        run_dir: a finished run directory.
        format: `"saved_model"` or `"tflite"`.
        out: where to write (default `RUN/export/saved_model` or `RUN/export/model.tflite`).

    Raises:
        TfftError: not a finished run, an unknown format, a modality or format that cannot
            be exported (the reason named).
    """
    import keras
    import tensorflow as tf

    if format not in FORMATS:
        raise TfftError(f"Unknown export format. Expected one of {list(FORMATS)}. Received: --format {format}")
    from tfft import tasks

    recipe, serving, model, class_names = load_run_serving(run_dir)
    run_dir = os.path.expanduser(str(run_dir))
    outputs = tasks.of(recipe.data).serving_outputs(model, class_names)

    if format == "saved_model":
        out = out or os.path.join(run_dir, "export", "saved_model")
        archive = keras.export.ExportArchive()
        archive.track(model)
        for resource in serving.track:
            archive.track(resource)
        archive.add_endpoint("serving_default", lambda *inputs: outputs(serving.features(*inputs)),
                             input_signature=serving.signature)
        for name, (signature, features) in serving.extra.items():
            archive.add_endpoint(name, _endpoint(outputs, features), input_signature=signature)
        staging = _staging(out)
        archive.write_out(staging, verbose=bool(verbose))
        with open(os.path.join(staging, "labels.txt"), "w", encoding="utf-8") as file:
            file.write("".join(f"{name}\n" for name in class_names))
        _swap(staging, out)
        return out
    if serving.lite_signature is None:
        raise TfftError(f"TFLite cannot serve this {recipe.data.kind} model: {serving.lite_refusal}")
    out = out or os.path.join(run_dir, "export", "model.tflite")

    # Through a SavedModel of the numeric signature: Keras 3's documented route to TFLite.
    import tempfile

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default",
                         lambda *inputs: dict(probabilities=outputs(serving.lite_features(*inputs))["probabilities"]),
                         input_signature=serving.lite_signature)
    with tempfile.TemporaryDirectory() as directory:
        archive.write_out(directory, verbose=bool(verbose))
        flat = tf.lite.TFLiteConverter.from_saved_model(directory).convert()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".partial", "wb") as file:
        file.write(flat)
    os.replace(out + ".partial", out)
    with open(os.path.join(os.path.dirname(os.path.abspath(out)), "labels.txt"), "w", encoding="utf-8") as file:
        file.write("".join(f"{name}\n" for name in class_names))
    return out


def _endpoint(outputs, features):
    return lambda *inputs: outputs(features(*inputs))


def output_function(model, class_names, k=TOP_K):
    """`batch -> {probabilities, top_classes, top_names}` over `model`'s logits."""
    import tensorflow as tf

    names = tf.constant(list(class_names))
    k = min(k, len(class_names))

    def outputs(batch):
        probabilities = tf.nn.softmax(tf.cast(model(batch, training=False), tf.float32), axis=-1)
        top = tf.math.top_k(probabilities, k=k)
        return dict(probabilities=probabilities, top_classes=top.indices, top_names=tf.gather(names, top.indices))

    return outputs


def load_run_serving(run_dir):
    """`(recipe, serving, model, class_names)` of a finished run, for export and predict."""
    import keras

    import tfft  # noqa: F401  (registers tfft's layers for text models)
    from tfft.model_file import read_metadata
    from tfft.modalities import get
    from tfft.recipe import recipe_from_run
    from tfft.trainer import Trainer

    run_dir = os.path.expanduser(str(run_dir))
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(model_path):
        raise TfftError(f"{run_dir} holds no finished run (no model.keras): train it with tfft run, "
                        "or finish it with tfft resume.")
    recipe = recipe_from_run(run_dir)
    if recipe.data.multi_label:
        raise TfftError("tfft serves single-label runs; this run is multi-label (data.multi_label=True).")
    metadata = read_metadata(model_path) or {}
    class_names = metadata.get("class_names") or _class_names(run_dir)
    trainer = (recipe.trainer or Trainer)(recipe, out_dir=run_dir, verbose=0, dry_run=True, save=False)
    serving = get(recipe.data.kind).serving(recipe, run_backbone(trainer, model_path), metadata)
    if serving is None:
        raise TfftError(f"tfft does not serve {recipe.data.kind} models yet: export and predict take image runs.")
    return recipe, serving, keras.models.load_model(model_path), list(class_names)


def run_backbone(trainer, model_path):
    """The run's backbone for its preprocessing: the preprocessing `model.keras` carries
    where it carries one (a text run's tokenizer; then nothing else is built, so the
    encoder's preset need not be installed), else as the run's trainer builds it (no
    weights loaded)."""
    from tfft.backbones import Backbone
    from tfft.modalities import get

    modality = get(trainer.recipe.data.kind)
    stored = modality.stored_preprocessing(model_path, **modality.backbone_options(trainer.recipe))
    if stored is not None:
        return Backbone(model=None, preprocess=stored, rules=None, family="", name=trainer.recipe.backbone.name,
                        source=model_path)
    return trainer.build_backbone()


def _class_names(run_dir):
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as file:
        return json.load(file)["class_names"]


def _staging(out):
    staging = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.dirname(staging), exist_ok=True)
    return staging


def _swap(staging, out):
    """Put the finished export in place, so `out` is never half-written."""
    if os.path.exists(out):
        old = out + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
