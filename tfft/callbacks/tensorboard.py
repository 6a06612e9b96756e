"""TensorBoard logging for a staged run: one callback, one step axis for every stage."""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.hparams import api_pb2 as hparams_pb2
from tensorboard.plugins.hparams import summary as hparams_summary

from tfft.callbacks.logs import scalar_or_none
from tfft.errors import TfftError
from tfft.evaluation import confusion_matrix_figure


# What the final model scored on the validation split (`metrics.json`), written at a run's
# end as `final/<name>` to the run root beside the hparams. The hparams dashboard finds a
# session's metrics at `<session>/<group>`: the root itself (group "") is the one place it
# finds them both when TensorBoard is opened on the run's `tensorboard/` folder (the
# session is then ".", and "./validation" names no run) and on a folder above it.
FINAL_METRICS = ("accuracy", "macro_f1", "loss", "ece")


def truncate_events(logdir, step):
    """Drop every summary written after global step `step` from the event files under
    `logdir`, so that a run resumed from a checkpoint at `step` continues the step axis with
    no repeat. Each run folder's events are rewritten into one file, under the name of its
    oldest.

    Returns:
        How many events were dropped.

    Example:
        >>> truncate_events("runs/mri/tensorboard", 120)
        14
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    dropped = 0
    for root, _, names in os.walk(logdir):
        files = sorted(n for n in names if ".tfevents." in n)
        if not files:
            continue
        kept = []
        for name in files:
            for event in EventFileLoader(os.path.join(root, name)).Load():
                if event.HasField("file_version"):
                    continue
                if event.step > step and event.HasField("summary"):
                    dropped += 1
                    continue
                kept.append(event)
        writer = EventFileWriter(root, filename_suffix=".resumed")
        for event in kept:
            writer.add_event(event)
        writer.close()
        (rewritten,) = set(n for n in os.listdir(root) if ".tfevents." in n) - set(files)
        for name in files:
            os.remove(os.path.join(root, name))
        # Under the oldest file's name: readers take event files in name (time) order, and a
        # file the resumed run opens in the same second must still come after this one.
        os.replace(os.path.join(root, rewritten), os.path.join(root, files[0]))
    return dropped


def flatten_hparams(hparams, prefix=""):
    """Flattens nested hyperparameters into dotted keys with TensorBoard-friendly values.

    Nested dicts (and dataclass instances) become dotted keys; `bool`, `int`, `float` and
    `str` values are kept, numpy scalars become Python scalars, anything else (lists,
    `None`, objects) becomes its `str`.

    Args:
        hparams: a dict, possibly nested.
        prefix: prepended, with a dot, to every key.

    Returns:
        A flat `{dotted_key: value}` dict.

    Example:
        >>> flatten_hparams({"optimizer": {"lr": 1e-3, "betas": [0.9, 0.99]}, "seed": None})
        {'optimizer.lr': 0.001, 'optimizer.betas': '[0.9, 0.99]', 'seed': 'None'}
    """
    flat = {}
    for key, value in hparams.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, dict):
            flat.update(flatten_hparams(value, name))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif isinstance(value, np.generic) and np.ndim(value) == 0:
            flat[name] = value.item()
        else:
            flat[name] = str(value)
    return flat


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes TensorBoard summaries for all stages of a run on one continuous step axis.

    Create one instance per run and pass it to every stage's `fit`. Every summary is
    written at the optimizer's global step (`optimizer.iterations`), so stages follow each
    other end to end instead of restarting at step 0. Training scalars go to
    `logdir/train`, validation scalars (the `val_` keys of the epoch logs, without the
    prefix) and confusion matrices to `logdir/validation`, hyperparameters to `logdir`
    itself so that TensorBoard's hparams dashboard finds `train` and `validation` as the
    metric groups of the run.

    During training it writes:
    - every `update_freq` optimizer steps: `loss` (the running mean of the epoch, as
      Keras reports it) and `learning_rate`;
    - at each epoch end: every key of the epoch logs, `epoch` (passes over the training
      data so far: `epochs_done()` when given, else Keras's epochs over the whole run),
      `learning_rate` and, with `group_learning_rates`, `learning_rate/<group>` for each
      layer group.

    The learning rate is the optimizer's rate at the step it is logged at; a schedule is
    evaluated at the current `iterations`. Writers are created on first use; call
    `close()` once the run is over.

    Args:
        logdir: directory of the run's event files.
        update_freq: write batch-level scalars every this many optimizer steps.
        group_learning_rates: optional callable returning `{group_name: learning_rate}`
            for the current step, for optimizers with per-group rates.
        epochs_done: optional callable returning the passes over the training data so far
            (a float: stages may end mid-epoch).

    Example:
        >>> logger = TensorBoardLogger("runs/mri/tensorboard")
        >>> logger.set_model(model)
        >>> logger.log_stage_begin(0, "head", 1290, "| group | lr |\\n|---|---|\\n| head | 1e-3 |")
        >>> model.fit(train, validation_data=val, epochs=2, callbacks=[logger])
        >>> model.fit(train, validation_data=val, initial_epoch=2, epochs=5, callbacks=[logger])
        >>> logger.close()
    """

    def __init__(self, logdir, update_freq=20, group_learning_rates=None, epochs_done=None):
        super().__init__()
        if isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1:
            raise TfftError(
                "`update_freq` must be a positive number of steps. "
                f"Received: update_freq={update_freq!r}"
            )
        if group_learning_rates is not None and not callable(group_learning_rates):
            raise TfftError(
                "`group_learning_rates` must be a callable returning {group: learning_rate}. "
                f"Received: group_learning_rates={group_learning_rates!r}"
            )
        self.logdir = os.fspath(logdir)
        self.update_freq = update_freq
        self.group_learning_rates = group_learning_rates
        self.epochs_done = epochs_done
        self._writers = {}
        self._previous_batch_step = None
        # Tags already written by the batch hook at a step, so the epoch hook does not write
        # the same point twice when an epoch ends on an `update_freq` boundary.
        self._batch_step_tags = (None, frozenset())

    # Writers and the step axis.

    def _writer(self, run):
        if run not in self._writers:
            path = os.path.join(self.logdir, run) if run else self.logdir
            self._writers[run] = tf.summary.create_file_writer(path)
        return self._writers[run]

    def _require_model(self):
        if self.model is None:
            raise TfftError(
                "TensorBoardLogger has no model yet, so it cannot read the optimizer's step. "
                "Call `logger.set_model(model)` first or pass `step=` explicitly."
            )
        return self.model

    def current_step(self):
        """Returns the optimizer's global step, the x axis of every summary."""
        # `np.asarray`, not `int(iterations)` (TypeError on the MirroredVariable under
        # MirroredStrategy) nor `keras.ops.convert_to_numpy` (numpy 2 DeprecationWarning
        # on Keras variables at every call).
        return int(np.asarray(self._require_model().optimizer.iterations))

    def current_learning_rate(self):
        """Returns the optimizer's learning rate at the current step as a float."""
        rate = self._require_model().optimizer.learning_rate
        return float(np.asarray(rate))

    def _resolve_step(self, step):
        return self.current_step() if step is None else int(step)

    def _write_scalars(self, run, scalars, step):
        with self._writer(run).as_default(step=step):
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value)

    def log_scalars(self, scalars, run="train", step=None):
        """Writes scalars to one run (a subdirectory of `logdir`) and flushes.

        Args:
            scalars: `{tag: value}`.
            run: the run, e.g. `"train"` or `"health/conv5"`.
            step: summary step; defaults to the optimizer's current step.

        Example:
            >>> logger.log_scalars({"health/gradient_norm": 0.8}, run="health/head")
        """
        self._write_scalars(run, scalars, self._resolve_step(step))
        self.flush()

    def flush(self):
        """Flushes every open writer to disk."""
        for writer in self._writers.values():
            writer.flush()

    def close(self):
        """Flushes and closes the writers; a later summary opens new ones."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # Keras hooks.

    def on_train_batch_end(self, batch, logs=None):
        step = self.current_step()
        previous = self._previous_batch_step
        if previous is None or previous >= step:
            # First batch, or the step went back (optimizer state restored from a checkpoint).
            previous = step - 1
        self._previous_batch_step = step
        # Crossing a multiple rather than `step % update_freq == 0`: with
        # `steps_per_execution > 1` the step advances several at a time.
        if step // self.update_freq <= previous // self.update_freq:
            return
        scalars = {"learning_rate": self.current_learning_rate()}
        loss = scalar_or_none((logs or {}).get("loss"))
        if loss is not None:
            scalars["loss"] = loss
        self._write_scalars("train", scalars, step)
        self._batch_step_tags = (step, frozenset(scalars))

    def batch_logged(self, step):
        """The batch end of `step` was logged by the process a resumed run continues: an
        epoch end at `step` then leaves out what that batch end wrote, as it would have."""
        if step // self.update_freq > (step - 1) // self.update_freq:
            self._batch_step_tags = (step, frozenset({"learning_rate", "loss"}))

    def on_epoch_end(self, epoch, logs=None):
        step = self.current_step()
        train, validation = {}, {}
        for key, value in (logs or {}).items():
            value = scalar_or_none(value)
            if value is None:
                continue
            if key.startswith("val_"):
                validation[key[len("val_"):]] = value
            else:
                train[key] = value
        train["epoch"] = float(self.epochs_done() if self.epochs_done is not None else epoch + 1)
        train["learning_rate"] = self.current_learning_rate()
        if self.group_learning_rates is not None:
            for group, rate in self.group_learning_rates().items():
                train[f"learning_rate/{group}"] = float(np.asarray(rate))
        written_step, written_tags = self._batch_step_tags
        if written_step == step:
            train = {tag: value for tag, value in train.items() if tag not in written_tags}
        self._write_scalars("train", train, step)
        if validation:
            self._write_scalars("validation", validation, step)
        self.flush()

    def on_train_end(self, logs=None):
        self.flush()

    # Run-level summaries, called by the trainer.

    def log_stage_begin(self, index, name, trainable_params, description="", step=None):
        """Marks the start of a stage: its index, trainable parameter count and plan.

        Args:
            index: position of the stage in the schedule, from 0.
            name: the stage's name.
            trainable_params: number of trainable parameters in this stage.
            description: markdown (typically a table of layer groups and learning rates)
                shown as the text summary `stage/plan`.
            step: summary step; defaults to the optimizer's current step.

        Example:
            >>> logger.log_stage_begin(1, "unfreeze_top", 120_000, "| group | lr |\\n|---|---|")
        """
        step = self._resolve_step(step)
        self._write_scalars(
            "train",
            {"stage/index": float(index), "stage/trainable_params": float(trainable_params)},
            step,
        )
        text = f"**Stage {int(index)}: {name}** ({int(trainable_params):,} trainable parameters)"
        if description:
            text = f"{text}\n\n{description}"
        with self._writer("train").as_default(step=step):
            tf.summary.text("stage/plan", text)
        self.flush()

    def log_confusion_matrix(self, cm, class_names, stage_name, step=None):
        """Writes a confusion matrix heat map as the image `confusion_matrix/<stage_name>`.

        The image goes to the `validation` run.

        Args:
            cm: square array of counts, rows true classes, columns predicted classes.
            class_names: names of the classes.
            stage_name: name of the stage the matrix was computed after.
            step: summary step; defaults to the optimizer's current step.

        Example:
            >>> cm = confusion_matrix(y_true, y_pred, num_classes=3)
            >>> logger.log_confusion_matrix(cm, ["a", "b", "c"], "head")
        """
        step = self._resolve_step(step)
        image = confusion_matrix_figure(cm, class_names, title=f"Confusion matrix: {stage_name}")
        with self._writer("validation").as_default(step=step):
            tf.summary.image(f"confusion_matrix/{stage_name}", image[np.newaxis], max_outputs=1)
        self.flush()

    def log_range_test(self, name, test):
        """Writes a learning-rate range test: its curve as the image `lr_find/<name>` and the
        smoothed loss against the sweep step as scalars, in the run `lr_find_<name>` (its own
        step axis: the sweep's steps are undone afterwards).

        Args:
            name: the stage the sweep was for.
            test: a `tfft.lr_finder.RangeTest`.
        """
        with self._writer(f"lr_find_{name}").as_default():
            for t, (rate, loss) in enumerate(zip(test.rates, test.smoothed)):
                tf.summary.scalar("lr_find/learning_rate", rate, step=t)
                if np.isfinite(loss):
                    tf.summary.scalar("lr_find/smoothed_loss", loss, step=t)
            tf.summary.image(f"lr_find/{name}", test.figure(f"stage '{name}'")[np.newaxis], step=0)
            tf.summary.text("lr_find/suggestion", f"{test.suggestion:.4g} ({test.rule}; stopped at {test.stopped})",
                            step=0)
        self.flush()

    def log_evaluation(self, run, report, confusion, reliability, table=""):
        """Writes a `tfft evaluate` report as its own run (`evaluation-<name>`): accuracy,
        macro F1, ECE and drift as scalars at step 0, the confusion matrix and reliability
        diagram as images, and the per-class table as text.

        Args:
            run: the TensorBoard run name.
            report: the evaluation's `metrics.json` dict.
            confusion: the confusion-matrix image (`[h, w, 3]` uint8).
            reliability: the reliability-diagram image.
            table: the per-class table, as text.
        """
        scalars = {f"evaluation/{k}": report[k] for k in ("accuracy", "entity_f1", "macro_f1", "ece") if k in report}
        drift = report.get("drift", {})
        scalars.update({f"drift/{k}": v for k, v in drift.items() if isinstance(v, float)})
        with self._writer(run).as_default(step=0):
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value)
            tf.summary.image("evaluation/confusion_matrix", confusion[np.newaxis], max_outputs=1)
            tf.summary.image("evaluation/reliability", reliability[np.newaxis], max_outputs=1)
            if table:
                tf.summary.text("evaluation/per_class", "```\n" + table + "\n```")
        self.flush()

    def log_text(self, tag, markdown, step=None):
        """Writes a markdown text summary to the `train` run.

        Args:
            tag: summary tag, e.g. `"run/recipe"`.
            markdown: the text.
            step: summary step; defaults to the optimizer's current step.

        Example:
            >>> logger.log_text("run/recipe", "```python\\nepochs = 12\\n```")
        """
        step = self._resolve_step(step)
        with self._writer("train").as_default(step=step):
            tf.summary.text(tag, str(markdown))
        self.flush()

    def log_examples(self, tag, images=None, audio=None, sample_rate=None, text=None, step=None):
        """Writes validation examples (misclassified ones, say) to the `validation` run.

        Args:
            tag: summary tag, e.g. `"misclassified/finetune"`.
            images: optional float array `[n, h, w, c]` in [0, 1] (images or spectrograms).
            audio: optional float array `[n, samples]` in [-1, 1], with `sample_rate`.
            text: optional markdown describing the examples (their true and predicted labels).
            step: summary step; defaults to the optimizer's current step.

        Example:
            >>> logger.log_examples("misclassified/head", text="| text | true | predicted |...")
        """
        step = self._resolve_step(step)
        with self._writer("validation").as_default(step=step):
            if images is not None and len(images):
                tf.summary.image(f"{tag}/images", np.asarray(images, "float32"), max_outputs=len(images))
            if audio is not None and len(audio):
                clips = np.asarray(audio, "float32")[..., np.newaxis]
                tf.summary.audio(f"{tag}/audio", clips, sample_rate, max_outputs=len(clips))
            if text:
                tf.summary.text(tag, str(text))
        self.flush()

    def log_hparams(self, hparams, metrics):
        """Records the run's hyperparameters for TensorBoard's hparams dashboard.

        Written directly with `tensorboard.plugins.hparams.api` to the run root, so it can
        be called once per run whatever the number of `fit` calls.

        Args:
            hparams: dict of hyperparameters, possibly nested; see `flatten_hparams`.
            metrics: names of the metrics to show next to them, as Keras names them in the
                epoch logs (`"val_accuracy"` is read from the `validation` run, `"loss"`
                from the `train` run), or `"final/<name>"` for what `log_run_end` writes
                (read from the run root).

        Example:
            >>> logger.log_hparams({"schedule": {"epochs": 12}, "seed": 1},
            ...                    ["val_loss", "val_accuracy"])
        """
        flat = flatten_hparams(hparams)
        metric_infos = []
        for metric in metrics:
            if metric.startswith("final/"):
                metric_infos.append(
                    hparams_api.Metric(
                        metric,
                        display_name=metric,
                        description="the final model on the validation split, at the run's end",
                        dataset_type=hparams_api.Metric.VALIDATION,
                    )
                )
            elif metric.startswith("val_"):
                metric_infos.append(
                    hparams_api.Metric(
                        metric[len("val_"):],
                        group="validation",
                        display_name=metric,
                        dataset_type=hparams_api.Metric.VALIDATION,
                    )
                )
            else:
                metric_infos.append(
                    hparams_api.Metric(
                        metric,
                        group="train",
                        display_name=metric,
                        dataset_type=hparams_api.Metric.TRAINING,
                    )
                )
        with self._writer("").as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam(name) for name in flat], metrics=metric_infos
            )
            hparams_api.hparams(flat)
        self.flush()

    def log_run_end(self, report, names=FINAL_METRICS, step=None):
        """Ends the run's hparams session: the final model's figures beside its hyperparameters.

        Writes `final/<name>` for each of `names` in `report`, then the session's
        end (status success), to the run root, where `log_hparams` wrote its start. Call
        it once, when the run has finished; a run that stops to be resumed later has no end
        yet.

        Args:
            report: the run's `metrics.json` dict.
            names: the figures of `report` to write (those that are numbers).
            step: summary step; defaults to the optimizer's current step.

        Example:
            >>> logger.log_run_end({"accuracy": 0.91, "macro_f1": 0.9, "loss": 0.3})
        """
        step = self._resolve_step(step)
        finals = {f"final/{name}": float(report[name]) for name in names
                  if isinstance(report.get(name), (int, float)) and np.isfinite(report[name])}
        self._write_scalars("", finals, step)
        end = hparams_summary.session_end_pb(hparams_pb2.STATUS_SUCCESS)
        with self._writer("").as_default():
            tf.summary.experimental.write_raw_pb(end.SerializeToString(), step=step)
        self.flush()
