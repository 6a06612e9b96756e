"""How the Trainer runs one stage: freezing, rates, `fit` for exactly its steps, and the guards.

A stage trains from the current data position for its planned steps, validating every
`validate_every` steps counted from the stage's start and at its end, so that a stage
resumed mid-way validates (and, while BatchNorm trains, recomputes its statistics) at the
very steps an uninterrupted run would. Around `fit`:

- the learning-rate finder resolves a rate of `"find"` when the stage starts;
- `CollapseGuard` rolls a stage back to its start and retries it at a third of the rate;
- `NonFinite` stops at a NaN loss (the trainer then stops or rolls back, `train.on_nan`);
- `Interruption` turns SIGTERM/SIGINT into a checkpoint at the end of the step.

A pairs stage (`tfft.pairs`) fits the classifier's layers up to the head's input on pairs
of training examples instead, its validations scoring the pair loss and ranking nothing.
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from tfft import adapters, feature_cache, pairs
from tfft.batchnorm import recompute_batchnorm_statistics
from tfft.callbacks.guards import NonFinite
from tfft.callbacks.health import for_stage as training_health
from tfft.callbacks.progress import StepLines, fit_verbosity
from tfft.callbacks.stage import CollapseGuard, StageProgress
from tfft.callbacks.validation import Validation
from tfft.errors import DataError, TfftError
from tfft.freezing import apply_freezing
from tfft.lr_finder import RULE, RULES, ExponentialSweep, RangeTest, SweepRecorder, suggest
from tfft.schedules import FIND, StageLearningRate
from tfft.snapshot import Snapshot

# A collapsing stage is retried this many times, each at a third of the previous rate.
COLLAPSE_RETRIES = 2
COLLAPSE_FACTOR = 1 / 3
# Without `train.validate_every`, validate every epoch, but no more than this many times a run:
# each validation scores the whole validation split and writes a checkpoint.
MAX_VALIDATIONS = 10
# A range test whose smoothed loss starts below this (nats) has nothing to read.
NEAR_ZERO_LOSS = 0.01


class Stopped(Exception):
    """A stage stopped before its end for a reason the run must handle: `reason` is
    `"interrupted"` (a signal) or `"diverged"` (a non-finite loss)."""

    def __init__(self, reason, index, stage, step, done, signal=None):
        super().__init__(reason)
        self.reason, self.index, self.stage, self.step, self.done, self.signal = reason, index, stage, step, done, signal


@dataclasses.dataclass
class Attempt:
    """What one `fit` of a stage left: its history, progress, guards and BatchNorm recompute."""

    history: dict
    progress: StageProgress
    guard: CollapseGuard
    nonfinite: NonFinite
    batchnorm: list


class StageLoop:
    """The stage machinery of `tfft.Trainer` (see the module docstring)."""

    def _freeze(self, stage):
        """Set the trainable flags of `stage`: its groups, its BatchNorm policy and, in the
        groups it trains through LoRA adapters, the adapters alone (`tfft.adapters`).
        Returns the trained group names and the variables held still inside trained layers."""
        trained = stage.trained_groups(self.group_names)
        apply_freezing(self.groups, trained, stage.train_bn)
        self._adapted = stage.adapted_groups(self.group_names)
        return trained, adapters.set_flags(self.groups, self.adapters, self._adapted)

    def _variables_trained(self):
        """Every variable some stage trains, in the model's order: what the optimizer is
        built over, once."""
        trained = {}
        for stage in self.stages:
            self._freeze(stage)
            trained.update((id(v), v) for v in self.model.trainable_variables)
        return [v for v in self.model.weights if id(v) in trained]

    def _prepare(self, stage, learning_rate, steps_per_execution=1):
        """Freeze and unfreeze for `stage`, set its per-group factors and `learning_rate`
        (a schedule on the global step) and compile; return the trained group names."""
        trained, held = self._freeze(stage)
        factors = stage.factors(self.group_names)
        # Pretrained weights under adapters get factor 0 as well as no gradient: neither the
        # weight decay nor L2-SP's pull can reach them.
        self.group_optimizer.set_factors([(g.variables, factors[g.name]) for g in self.groups] + [(held, 0.0)])
        self._factors = factors
        self.group_optimizer.learning_rate = learning_rate
        previous, self._feature_cache = self._feature_cache, None
        if feature_cache.why_not(self, stage) is None:
            try:
                self._feature_cache = feature_cache.build(self, self.out_dir, previous, self.verbose)
            except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
                _raise_data_error(error, self._unreadable_training_files(),
                                  "while the frozen backbone's outputs were computed")
                raise
        models = [self.model] + ([self._feature_cache.head] if self._feature_cache else [])
        if stage.objective == "pairs":  # the classifier too: callbacks reach the optimizer through it
            models.append(self._pair_model())
        with self.strategy.scope():
            for model in models:
                pair = isinstance(model, pairs.PairModel)
                model.compile(
                    optimizer=self.optimizer,
                    loss=None if pair else self.build_loss(),
                    metrics=None if pair else self.build_metrics(),
                    jit_compile=self.recipe.runtime.jit_compile,
                    steps_per_execution=steps_per_execution,
                )
        return trained

    def _pair_model(self):
        """The `tfft.pairs.PairModel` of this classifier (built once): its layers up to
        the head's input, trained on pairs of training examples."""
        if self._pairs is None:
            tensor = feature_cache.split(self.model, self.backbone.model)
            if tensor is None:
                raise TfftError("A pairs stage trains the features the head starts from, but this model's head does "
                                "not start from one output of the backbone (see Trainer.build_head).")
            with self.strategy.scope():
                self._pairs = pairs.PairModel(keras.Model(self.model.inputs, tensor, name="tfft_features"),
                                              name="tfft_pairs")
        return self._pairs

    def _fitted(self, stage, callbacks):
        """What `fit` runs on for the stage `_prepare` set up: `(model, stream, callbacks)`.
        The whole classifier on the training stream; the head on cached features
        (`tfft.feature_cache`); or, in a pairs stage, the features on the training stream
        (`tfft.pairs`). The callbacks are kept on the whole classifier."""
        if stage.objective == "pairs":
            return (self._pair_model(), self.datasets.train_stream,
                    [feature_cache.OnWholeModel(callbacks, self.model)])
        cache = self._feature_cache
        if cache is None:
            return self.model, self.datasets.train_stream, callbacks
        return (cache.head, lambda position: cache.stream(self.datasets, position),
                [feature_cache.OnWholeModel(callbacks, self.model)])

    def find_learning_rate(self, stage, steps=100, start_lr=1e-7, end_lr=10.0):
        """Run the learning-rate range test on `stage`'s trainable groups, then put the
        weights and the optimizer back as they were. Returns a `tfft.lr_finder.RangeTest`.

        The sweep reads the training stream from the current position on and trains with
        the stage's freezing, BatchNorm policy and per-group factors; its suggestion is the
        stage's peak rate (the head's; the groups scale it as in the stage).

        Example:
            >>> trainer.setup()
            >>> test = trainer.find_learning_rate(trainer.stages[0])
            >>> test.suggestion, test.rule
        """
        self.setup()
        snapshot = Snapshot.take(self.model, self.optimizer)
        sweep = ExponentialSweep(start_lr, end_lr, steps, start_step=int(np.asarray(self.optimizer.iterations)))
        recorder = SweepRecorder(sweep)
        generators = _seed_states(self.model)
        try:
            self._prepare(stage, sweep)
            model, stream, callbacks = self._fitted(stage, [recorder])
            model.fit(stream(self.position), steps_per_epoch=1, epochs=steps,
                      class_weight=self.datasets.class_weights, shuffle=False, callbacks=callbacks, verbose=0)
        finally:
            snapshot.restore(self.model, self.optimizer)
            _restore_seed_states(self.model, generators)
        try:
            suggestion = suggest(recorder.rates, recorder.smoothed, RULE)
        except TfftError as error:
            raise TfftError(f"Stage '{stage.name}': {_why_the_sweep_stopped(recorder, error)}") from None
        return RangeTest(recorder.rates, recorder.losses, recorder.smoothed, suggestion, f"{RULE}: {RULES[RULE]}",
                         recorder.stopped)

    def _resolve_rate(self, index, stage):
        if stage.lr != FIND:
            return stage
        test = self.find_learning_rate(stage)
        self.range_tests[stage.name] = test
        if self.logger is not None:
            self.logger.log_range_test(stage.name, test)
            self._write_range_test(stage.name, test)
        if self.verbose:
            print(f"stage '{stage.name}': learning-rate finder suggests {test.suggestion:.3g} ({test.rule}; "
                  f"sweep of {len(test.rates)} steps, stopped at {test.stopped})", flush=True)
        resolved = dataclasses.replace(stage, lr=test.suggestion)
        self.stages[index] = resolved
        return resolved

    def _validation_period(self, stage):
        every = self.recipe.train.validate_every
        if every is None:
            total = sum(s.steps for s in self.stages)
            every = max(self.steps_per_epoch, math.ceil(total / MAX_VALIDATIONS))
        return max(1, min(int(every), stage.steps))

    def _execution_steps(self, stage, done):
        """`runtime.steps_per_execution` for `stage`, lowered to the largest number that
        divides the stage's steps, its validation period and the steps already done:
        Keras runs whole executions, so that each `fit` ends on its planned step."""
        whole = math.gcd(math.gcd(stage.steps, self._validation_period(stage)), done)
        return max(d for d in range(1, min(self.recipe.runtime.steps_per_execution, whole) + 1) if whole % d == 0)

    def _chance_loss(self):
        return math.log(2.0) if self.datasets.multi_label else math.log(self.num_classes)

    def _run_stage(self, index, stage, resumed=None):
        """Run stage `index` to its end; `resumed` is the stage part of a checkpoint's state
        when the run continues mid-stage. Returns the stage's history entry."""
        planned = self.planned_stages[index]
        if resumed is None:
            stage = self._resolve_rate(index, stage)
            first_step, first_attempt = int(np.asarray(self.optimizer.iterations)), 0
        else:
            first_step, first_attempt = resumed["stage_first_step"], resumed["attempt"]
        trainable, attempt = 0, first_attempt
        for attempt in range(first_attempt, COLLAPSE_RETRIES + 1):
            if resumed is not None and attempt == first_attempt:
                start_step, start_position = resumed["stage_start_step"], resumed["stage_start_position"]
            else:
                start_step, start_position = int(np.asarray(self.optimizer.iterations)), self.position
            learning_rate = StageLearningRate(stage.lr, start_step, stage.steps, stage.shape, stage.warmup)
            trained = self._prepare(stage, learning_rate, self._execution_steps(stage, self.position - start_position))
            snapshot = Snapshot.take(self.model, self.optimizer)
            self._stage_state = dict(stage_index=index, stage_name=stage.name, stage_start_step=start_step,
                                     stage_start_position=start_position, stage_first_step=first_step,
                                     attempt=attempt)
            trainable = sum(g.num_trainable_params for g in self.groups)
            if resumed is not None and attempt == first_attempt:
                if self.verbose:
                    done = self.position - start_position
                    where = (f"at step {done + 1} of {stage.steps}" if done < stage.steps else
                             f"after its last step ({stage.steps}): the stage ends here")
                    print(f"stage {index + 1}/{len(self.stages)} '{stage.name}': resuming {where}", flush=True)
                self.on_stage_begin(stage, index)
            elif attempt == 0:
                self.logger.log_stage_begin(index, stage.name, trainable, self._stage_table(stage, trained, self._factors))
                if self.verbose:
                    execution = self.model.steps_per_execution
                    lora = sorted(self._adapted, key=self._group_order)
                    print(f"stage {index + 1}/{len(self.stages)} '{stage.name}': {stage.steps} steps "
                          f"({stage.epochs:.3g} epochs), training {sorted(trained, key=self._group_order)} "
                          f"({trainable:,} parameters)" + (f", {lora} through LoRA adapters" if lora else "")
                          + (f", {execution} steps per execution" if execution > 1 else ""), flush=True)
                self.on_stage_begin(stage, index)
            if resumed is not None and self.position - start_position >= stage.steps:
                # The checkpoint was written at the stage's very end: only its report is left,
                # and its validation if the checkpoint came first (`train.checkpoint_every` or a
                # signal at that step): the best weights may be the ones of that validation.
                logs = dict(resumed.get("logs", {}))
                self._validation = None
                if not any(k.startswith("val_") for k in logs):
                    self._validate_now(stage, logs)
                outcome = Attempt({k: [v] for k, v in logs.items()},
                                  StageProgress(start_position, stage.steps, self.position),
                                  CollapseGuard(self._last_loss, self._chance_loss()), NonFinite(), [])
                break
            outcome = self._fit(index, stage, start_position)
            self.position, self._progress = outcome.progress.position, None
            if self.interruption.signal is not None:
                raise Stopped("interrupted", index, stage, int(np.asarray(self.optimizer.iterations)),
                              outcome.progress.done, self.interruption.signal)
            if outcome.nonfinite.step is not None:
                raise Stopped("diverged", index, stage, outcome.nonfinite.step, outcome.progress.done)
            guard = outcome.guard
            if guard.collapsed is None:
                break
            snapshot.restore(self.model, self.optimizer, keep_step=True)
            _, smoothed, threshold = guard.collapsed
            what = (f"stage '{stage.name}': the training loss rose to {smoothed:.3g} (from {guard.reference:.3g}; "
                    f"collapse threshold {threshold:.3g}, chance {guard.chance:.3g}) after {outcome.progress.done} steps")
            if attempt == COLLAPSE_RETRIES:
                print(f"{what}: rolled back to the stage's start and ended the stage there, after "
                      f"{COLLAPSE_RETRIES + 1} attempts", flush=True)
                self._validation.score()
                break
            lower = stage.lr * COLLAPSE_FACTOR
            print(f"{what}: rolled back to the stage's start; trying again at lr {lower:.3g} instead of "
                  f"{stage.lr:.3g} (attempt {attempt + 2} of {COLLAPSE_RETRIES + 1})", flush=True)
            stage = dataclasses.replace(stage, lr=lower)
            self.stages[index] = stage
        self.stages[index] = stage
        logs = {k: float(v[-1]) for k, v in outcome.history.items()}
        if outcome.batchnorm and self.verbose:
            print(f"recomputed the statistics of {outcome.batchnorm[0]} BatchNorm layers over "
                  f"{outcome.batchnorm[1]} training batches before each validation", flush=True)
        if stage.objective == "pairs":  # the head is untrained: no classifier to report on
            report = dict(accuracy=None)
        else:
            self._last_loss = logs.get("loss", self._last_loss)
            report, wrong = self._validation_report()
            if "confusion_matrix" in report:
                self.logger.log_confusion_matrix(np.array(report["confusion_matrix"]), self.datasets.class_names,
                                                 stage.name)
            self.log_misclassified(stage, wrong)
        self.on_stage_end(stage, index, logs)
        end_step = int(np.asarray(self.optimizer.iterations))
        lora = {} if not self._adapted else dict(lora=dict(
            rank=stage.lora.rank, alpha=stage.lora.rank * stage.lora.scale,
            groups=sorted(self._adapted, key=self._group_order)))
        return dict(name=stage.name, steps=planned.steps, steps_run=end_step - first_step,
                    epochs=planned.epochs, lr=stage.lr, planned_lr=planned.lr, attempts=attempt + 1,
                    trainable_params=trainable, **lora, stage_end_accuracy=report["accuracy"], **logs)

    def _new_validation(self, stage, batchnorm=None, skip=None):
        """The `Validation` callback of `stage`: with precise BatchNorm first when the stage
        trains BatchNorm (`batchnorm` receives what the recompute reports); on the frozen
        backbone's validation features when the stage trains on cached features."""
        precise = self.recipe.schedule.precise_bn if stage.train_bn else 0

        def recompute():
            result = recompute_batchnorm_statistics(self.model, self.datasets.train, precise)
            if batchnorm is not None:
                batchnorm[:] = result

        if stage.objective == "pairs":
            return pairs.PairValidation(self.datasets.validation, self._pair_model().features,
                                        before=recompute if precise else None, skip=skip)
        cache = self._feature_cache
        scores = self.data_task.validation_scores(self.datasets)
        if cache is not None and not precise:
            return Validation(cache.validation(self.datasets), self.build_loss(), self.datasets.multi_label,
                              skip=skip, scorer=cache.head, scores=scores)
        return Validation(self.datasets.validation, self.build_loss(), self.datasets.multi_label,
                          before=recompute if precise else None, skip=skip, scores=scores)

    def _validate_now(self, stage, logs):
        """The validation due at the current step, as the end of a `fit` epoch runs it:
        scored, logged and checkpointed, its `val_*` keys added to `logs`."""
        self._validation = self._new_validation(stage)  # what `best/` keeps the scores of
        if self.logger is not None:
            self.logger.batch_logged(int(np.asarray(self.optimizer.iterations)))
        for callback in (self._validation, training_health(self, stage), self.logger, self.checkpoints):
            if callback is not None:
                callback.set_model(self.model)
                callback.on_epoch_end(self._round, logs)
        self._round += 1

    def _unreadable_training_files(self):
        from tfft import modalities

        files = [item for item, _ in (self.datasets.items or {}).get("train", []) if isinstance(item, str)]
        try:
            return modalities.get(self.recipe.data.kind).unreadable(files) if files else []
        except Exception:  # naming the file is a courtesy; the error stands without it
            return []

    def _fit(self, index, stage, start_position):
        """One attempt at `stage`: `fit` from the current data position to the stage's end,
        validating on the stage's own grid of steps (see the module docstring)."""
        batchnorm = []
        stopping = lambda: self.interruption.signal is not None or nonfinite.step is not None  # noqa: E731
        self._validation = self._new_validation(stage, batchnorm, skip=stopping)
        progress = self._progress = StageProgress(start_position, stage.steps, position=self.position)
        guard = (CollapseGuard(None, pairs.CHANCE) if stage.objective == "pairs" else
                 CollapseGuard(self._last_loss, self._chance_loss()))
        nonfinite = NonFinite()
        health = training_health(self, stage, steps_left=lambda: stage.steps - progress.done, skip=stopping)
        callbacks = [self._validation, progress, guard, nonfinite, self.interruption, health, self.logger,
                     self.checkpoints]
        callbacks = [c for c in callbacks if c is not None]
        if stage.early_stopping and stage.objective == "classes":  # a pairs stage scores no `train.monitor`
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=self.recipe.train.monitor, mode=self._monitor_mode, patience=stage.early_stopping))
        callbacks += self.build_callbacks(stage, index)
        verbose = fit_verbosity(self.verbose)
        if verbose == 2:  # a log file: a line every 30 s between Keras's epoch lines
            callbacks.append(StepLines(f"stage {index + 1}/{len(self.stages)} '{stage.name}'", progress,
                                       run_done=lambda: sum(s.steps for s in self.stages[:index]),
                                       run_steps=sum(s.steps for s in self.stages)))
        model, stream, callbacks = self._fitted(stage, callbacks)
        period = self._validation_period(stage)
        history = {}
        done = progress.done
        # The first fit reaches the next step of the stage's validation grid (a resume may
        # start between two); the second runs whole periods to the stage's end.
        segments = []
        if done % period:
            segments.append((min(period - done % period, stage.steps - done), 1))
            done += segments[-1][0]
        if done < stage.steps:
            segments.append((period, math.ceil((stage.steps - done) / period)))
        for steps_per_epoch, rounds in segments:
            try:
                fit = model.fit(
                    stream(progress.position),
                    steps_per_epoch=steps_per_epoch,
                    initial_epoch=self._round,
                    epochs=self._round + rounds,
                    class_weight=self.datasets.class_weights if stage.objective == "classes" else None,
                    shuffle=False,  # the stream is shuffled; Keras would only warn
                    callbacks=callbacks,
                    verbose=verbose,
                )
            except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
                _raise_data_error(error, self._unreadable_training_files())
                raise
            self._round += len(fit.epoch)
            history.update(fit.history or {})
            if model.stop_training and progress.done < stage.steps:
                break  # early stopping, a collapse, a NaN or a signal
        return Attempt(history, progress, guard, nonfinite, batchnorm)


def _why_the_sweep_stopped(recorder, error):
    """`error` (a sweep too short to suggest a rate) with what the sweep ran into."""
    finite = [v for v in recorder.smoothed if math.isfinite(v)]
    where = f"at rate {recorder.rates[len(recorder.smoothed) - 1]:.2g} {recorder.stopped}"
    if finite and min(finite) < NEAR_ZERO_LOSS:
        # Nothing to read on a curve that starts at zero: any wiggle is a fourfold rise.
        return (f"the learning-rate sweep stopped after {len(finite)} steps ({where}, from a smoothed loss of "
                f"{min(finite):.2g}): the training loss was near zero when the stage began, the earlier stages "
                "having fit the training data, so a range test has no curve to read. Give this stage a rate "
                "instead of 'find' (e.g. schedule.finetune_lr=1e-4), or a shorter or slower head stage.")
    return f"{error} The sweep stopped {where}."


def _raise_data_error(error, unreadable=(), when="mid-epoch"):
    """Raise a file that fails to decode mid-epoch (when `data.verify` was off), or `when`
    else, as one `DataError` line that names it when the modality can find it
    (`Modality.unreadable`). An error that no file explains and that says nothing of
    decoding is left to its caller to raise as it is: it is not the data's (calling it a
    file's hid a failing op under a mirrored strategy)."""
    if unreadable:
        what = f"{unreadable[0]}" + (f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else "")
        raise DataError(f"A training file could not be read {when}: {what}. Fix or delete it, leave data.verify "
                        "on to find such files before training, or set data.on_error='skip' to leave them out.") \
            from None
    lines = [line.strip() for line in str(error.message).splitlines() if line.strip()]
    first = next((line for line in lines if "DataError" in line or "decode" in line.lower()), None)
    if first is not None:
        raise DataError(f"A training file could not be read {when} ({first[:300]}): leave data.verify on to find "
                        "such files before training, or set data.on_error='skip' to leave them out.") from None


def _seed_states(model):
    from tfft.callbacks.checkpoints import seed_generators

    return [(g, np.array(g.state)) for g in seed_generators(model)]


def _restore_seed_states(model, states):
    for generator, value in states:
        generator.state.assign(value)
