"""The Trainer: one fine-tuning job, run as a sequence of stages on one model and optimizer.

`Trainer.run()` does, in order:

1. choose the strategy, build the backbone, the data, the model and its layer groups,
2. build the optimizer once over every variable any stage will train,
3. for each stage: freeze and unfreeze groups, set per-group rates and the stage's rate
   shape, compile (Keras caches the train function, so a changed `trainable` flag only
   takes effect after compiling again) and `fit` for exactly the stage's steps on one
   stream of training batches that runs on from stage to stage, validating every
   `validate_every` steps and at the stage's end; a stage whose training loss collapses is
   rolled back to its start and tried again at a lower rate,
4. evaluate, write `metrics.json`, save the model.

Every `build_*` method and `on_stage_*` hook is meant to be overridden:

```python
class MyTrainer(tfft.Trainer):
    def build_head(self, features):
        x = keras.layers.GlobalAveragePooling2D()(features)
        return keras.layers.Dense(self.num_classes, dtype="float32")(x)
```
"""

import dataclasses
import json
import math
import os
import shutil

import keras
import numpy as np

from tfft import evaluation
from tfft.batchnorm import batchnorm_layers, recompute_batchnorm_statistics
from tfft.callbacks import examples
from tfft.callbacks.checkpoints import StageCheckpoint
from tfft.callbacks.stage import CollapseGuard, StageProgress
from tfft.callbacks.tensorboard import TensorBoardLogger
from tfft.callbacks.validation import Validation
from tfft.data.build import audio_features, datasets_from_recipe
from tfft.distribute import batches_for_replicas, mixed_precision_policy, resolve_strategy
from tfft.errors import TfftError
from tfft.freezing import HEAD, LayerGroup, apply_freezing, layer_groups
from tfft.lr_finder import RULE, RULES, ExponentialSweep, RangeTest, SweepRecorder, suggest
from tfft.optimizers import make_optimizer
from tfft.recipe import Recipe
from tfft.schedules import FIND, StageLearningRate, build_stages, plan_steps
from tfft.snapshot import Snapshot

# A collapsing stage is retried this many times, each at a third of the previous rate.
COLLAPSE_RETRIES = 2
COLLAPSE_FACTOR = 1 / 3
# Without `train.validate_every`, validate every epoch, but no more than this many times a run.
MAX_VALIDATIONS = 20


@dataclasses.dataclass
class StagePlan:
    """What one stage will do: returned by `Trainer.plan()` and printed by `tfft plan`.

    Args:
        index: 0-based stage number.
        stage: the `Stage` (its `why` says how its length was set, `purpose` what it is for).
        bounds: `(first_step, end_step)` on the run's step axis.
        steps: optimizer steps of the stage.
        epochs: the stage's length in epochs (may be fractional).
        groups: one row per group, head last: `(name, trains, trainable_params, lr)`, where
            `lr` is the stage's peak rate times the group's factor (0 when frozen; None
            when the rate is found at the stage's start).
        batchnorm_trains: whether BatchNorm layers train in this stage.
    """

    index: int
    stage: object
    bounds: tuple
    steps: int
    epochs: float
    groups: list
    batchnorm_trains: bool = False

    @property
    def trainable_params(self):
        return sum(row[2] for row in self.groups)


class Trainer:
    """Runs a recipe: staged fine-tuning of a pretrained backbone with a new head.

    Args:
        recipe: a `tfft.Recipe` (default: every default value).
        out_dir: run directory; default `recipe.output.dir`, else `runs/<recipe name>`.
        overwrite: replace a run directory that already holds files.
        verbose: Keras `fit` verbosity (2: one line per epoch).
        dry_run: build the architecture without loading pretrained weights and without
            decoding every image (what `plan` needs); the BatchNorm policy still follows
            the recipe's weights.
        save: write checkpoints and `model.keras` (False for the trials of a search).

    Example:
        >>> recipe = tfft.load_recipe("recipes/tumor_resnet.py", demo=True)
        >>> result = tfft.Trainer(recipe, out_dir="runs/demo").run()
        >>> result["accuracy"]
    """

    def __init__(self, recipe=None, out_dir=None, overwrite=False, verbose=2, dry_run=False, save=True):
        self.recipe = recipe or Recipe()
        self.dry_run = dry_run
        self.save = save
        self.out_dir = out_dir or self.recipe.output.dir or _default_run_dir(self.recipe)
        self.overwrite = overwrite
        self.verbose = verbose
        self.strategy = None
        self.backbone = None
        self.datasets = None
        self.model = None
        self.groups = None
        self.stages = None
        self.optimizer = None
        self.steps_per_epoch = None
        self.logger = None
        self.position = 0  # training batches consumed: where the data stream continues
        self.range_tests = {}
        self._round = 0  # Keras epochs so far: one per validation
        self._last_loss = None
        self._validation = None
        self._replaced = False
        self._progress = None
        self.search = None
        self._built = False

    # -- hooks: override any of these ------------------------------------------------------

    def build_strategy(self):
        """Return the `tf.distribute.Strategy` (default: from `runtime.strategy`)."""
        return resolve_strategy(self.recipe.runtime.strategy, self.recipe.runtime.devices)

    def build_backbone(self):
        """Return a `tfft.backbones.Backbone` (model, preprocessing, group rules).

        Called under the strategy scope.
        """
        from tfft.backbones import build_backbone  # keeps `import tfft` light

        config = self.recipe.backbone
        return build_backbone(
            config.name,
            weights=config.weights,
            input_size=config.input_size,
            family=config.family,
            modality=self.recipe.data.kind,
            sequence_length=self.recipe.data.sequence_length,
            pooling=self.recipe.head.pooling,
            spectrogram_shape=audio_features(self.recipe.data).shape[:2] if self.recipe.data.kind == "audio" else None,
            load_weights=not self.dry_run,
        )

    def build_datasets(self):
        """Return a `tfft.data.Datasets` for `data.kind`.

        `self.backbone` is built already: its preprocessing and input size are used.
        """
        return datasets_from_recipe(
            self.recipe.data, self.backbone, self.recipe.backbone.input_size, dry_run=self.dry_run, verbose=self.verbose
        )

    def build_head(self, features):
        """Return the head's output logits for the backbone's `features` (a symbolic tensor).

        The default pools 4D features (`head.pooling`), applies dropout and an optional
        hidden layer, and ends in a float32 `Dense(num_classes)` (logits).
        """
        config = self.recipe.head
        x = features
        if len(x.shape) == 4:
            pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
            if config.pooling not in pool:
                raise TfftError(f"head.pooling must be 'avg' or 'max'. Received: head.pooling={config.pooling!r}")
            x = pool[config.pooling](name="head_pool")(x)
        if config.hidden:
            x = keras.layers.Dense(config.hidden, activation="relu", name="head_hidden")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
        return keras.layers.Dense(self.num_classes, dtype="float32", name="head_logits")(x)

    def build_model(self, backbone_model):
        """Return the whole classifier: the backbone, nested, followed by `build_head`."""
        spec = backbone_model.input
        if isinstance(spec, dict):  # a text encoder: token_ids, padding_mask, ...
            inputs = {name: keras.Input(t.shape[1:], dtype=t.dtype, name=name) for name, t in spec.items()}
        else:
            inputs = keras.Input(spec.shape[1:], dtype=spec.dtype, name="inputs")
        outputs = self.build_head(backbone_model(inputs))
        return keras.Model(inputs, outputs, name="tfft_classifier")

    def build_layer_groups(self, backbone):
        """Return the backbone's `LayerGroup`s, bottom to top (the head is added after)."""
        config = self.recipe.backbone
        return layer_groups(backbone.model, patterns=config.groups or None, rules=backbone.rules, num_groups=config.num_groups)

    def build_optimizer(self):
        """Return the optimizer; it must support per-variable factors (`tfft.optimizers`)."""
        config = self.recipe.train
        lr = self.stages[0].lr
        return make_optimizer(config.optimizer, 1e-3 if lr == FIND else lr, weight_decay=config.weight_decay)

    def build_loss(self):
        """Return the loss: cross-entropy on logits (a sigmoid per class when multi-label)."""
        smoothing = self.recipe.train.label_smoothing
        if self.datasets.multi_label:
            return keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
        if smoothing:
            return _SmoothedSparseCrossentropy(self.num_classes, smoothing)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def build_metrics(self):
        """Return the metrics compiled with the model."""
        if self.datasets.multi_label:
            # On logits, threshold 0 is probability 0.5. Per label, so not named "accuracy":
            # the report's accuracy is the exact-match ratio.
            return [keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0)]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def build_callbacks(self, stage, index):
        """Return extra Keras callbacks for stage `index` (default: none)."""
        return []

    def on_stage_begin(self, stage, index):
        """Called after the stage's freezing is applied and the model compiled, before `fit`."""

    def on_stage_end(self, stage, index, logs):
        """Called after the stage's `fit` with the last epoch's logs."""

    # -- building --------------------------------------------------------------------------

    @property
    def num_classes(self):
        return self.datasets.num_classes

    def setup(self):
        """Build strategy, backbone, data, model, groups, schedule and optimizer.

        Everything that can be wrong with a recipe fails here, before any training.
        """
        if self._built:
            return
        runtime = self.recipe.runtime
        if self.recipe.train.validate_every is not None and self.recipe.train.validate_every < 1:
            raise TfftError(f"train.validate_every must be at least 1 step. Received: "
                            f"train.validate_every={self.recipe.train.validate_every!r}")
        keras.utils.set_random_seed(runtime.seed)
        policy = mixed_precision_policy(runtime.mixed_precision)
        keras.mixed_precision.set_global_policy(policy or "float32")
        self.strategy = self.build_strategy()
        with self.strategy.scope():
            self.backbone = self.build_backbone()
        self.datasets = batches_for_replicas(
            self.build_datasets(), self.strategy.num_replicas_in_sync, self.recipe.data.batch_size
        )
        with self.strategy.scope():
            backbone_groups = self.build_layer_groups(self.backbone)
            self.model = self.build_model(self.backbone.model)
            head_layers = [
                layer for layer in self.model.layers
                if layer is not self.backbone.model and not isinstance(layer, keras.layers.InputLayer)
            ]
            self.groups = backbone_groups + [LayerGroup(HEAD, head_layers)]
            self.steps_per_epoch = self.datasets.steps_per_epoch
            self.stages = build_stages(self._resolved_schedule(), self.group_names, self.steps_per_epoch)
            self.optimizer = self.build_optimizer()
            # Build over every variable any stage will train, once, so that unfreezing a
            # group later neither raises `Unknown variable` nor resets the head's moments.
            apply_freezing(self.groups, {g.name for g in self.groups}, train_bn=any(s.train_bn for s in self.stages))
            self.optimizer.build(self.model.trainable_variables)
            if self.recipe.train.l2_sp:
                self._anchor_backbone()
            if policy == "mixed_float16":
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
        self._built = True

    def _anchor_backbone(self):
        """L2-SP: a frozen copy of every trainable backbone weight, for the optimizer to pull
        toward. Taken before any training (and before a resume loads a checkpoint)."""
        strength = self.recipe.train.l2_sp
        if strength < 0:
            raise TfftError(f"train.l2_sp must be >= 0. Received: train.l2_sp={strength!r}")
        pairs = [(v, keras.Variable(np.array(v), trainable=False, name="l2_sp_anchor"))
                 for g in self.groups if g.name != HEAD for v in g.trainable_candidates]
        self.group_optimizer.set_anchors(pairs, strength)

    def _resolved_schedule(self):
        schedule = self.recipe.schedule
        if schedule.kind == "auto":
            # Planned as the recommended candidate; `run` chooses before it sets up.
            from tfft.tuning import recommended_schedule

            values = {k.split(".", 1)[1]: v for k, v in recommended_schedule(self.recipe.data.kind).items()}
            schedule = dataclasses.replace(schedule, **values)
        if schedule.train_bn == "auto":
            return dataclasses.replace(schedule, train_bn=not self.backbone.pretrained)
        return schedule

    @property
    def current_position(self):
        """Training batches consumed so far, counting those of the stage running now."""
        return self._progress.position if self._progress is not None else self.position

    @property
    def has_batchnorm(self):
        """Whether the backbone has BatchNorm layers (so its BatchNorm policy matters)."""
        return bool(batchnorm_layers(self.backbone.model))

    @property
    def group_names(self):
        """Backbone group names, bottom to top (without the head)."""
        return [g.name for g in self.groups if g.name != HEAD]

    @property
    def group_optimizer(self):
        """The optimizer holding per-group factors (inside a loss-scale wrapper if any)."""
        return getattr(self.optimizer, "inner_optimizer", self.optimizer)

    def plan(self):
        """Return a `StagePlan` per stage without training.

        Example:
            >>> for stage in Trainer(recipe).plan():
            ...     print(stage.stage.name, stage.trainable_params)
        """
        self.setup()
        plans = []
        for index, (stage, bounds) in enumerate(zip(self.stages, plan_steps(self.stages))):
            trained = stage.trained_groups(self.group_names)
            factors = stage.factors(self.group_names)
            apply_freezing(self.groups, trained, stage.train_bn)
            rates = {g.name: None if stage.lr == FIND else stage.lr * factors[g.name] for g in self.groups}
            rows = [(g.name, g.name in trained, g.num_trainable_params, rates[g.name]) for g in self.groups]
            batchnorm = stage.train_bn and any(
                layer.trainable for g in self.groups if g.name in trained for layer in batchnorm_layers_of(g))
            plans.append(StagePlan(index, stage, bounds, stage.steps, stage.steps / self.steps_per_epoch, rows,
                                   batchnorm))
        return plans

    # -- running ---------------------------------------------------------------------------

    def run(self):
        """Run every stage, evaluate and save. Returns the metrics written to `metrics.json`.

        With `schedule.kind="auto"`, the schedule is chosen first on held-out training data
        (`tfft.tuning.run_auto`), then the winner trains on the whole training split.
        """
        self._check_out_dir()
        if self.recipe.schedule.kind == "auto":
            self._choose_schedule()
        self.setup()
        self._open_run()
        history = []
        try:
            for index, stage in enumerate(self.stages):
                history.append(self._run_stage(index, stage))
            metrics = self._evaluate(history)
            if self.save:
                self._save_model()
        finally:
            self.logger.close()
        return metrics

    def range_test(self, stage_name=None, steps=100):
        """The learning-rate range test of one stage, as `tfft lr-find` runs it.

        Trains the stages before it first (as the recipe says, writing their logs to the
        run directory like a run does), then sweeps. Returns `(stage, RangeTest)`.

        Args:
            stage_name: the stage; None is the first stage whose rate is `"find"`, else the
                first stage.
            steps: steps of the sweep.

        Example:
            >>> stage, test = Trainer(recipe, out_dir="runs/lr-find").range_test("finetune")
            >>> test.suggestion
        """
        self._check_out_dir()
        self.setup()
        names = [s.name for s in self.stages]
        if stage_name is None:
            index = next((i for i, s in enumerate(self.stages) if s.lr == FIND), 0)
        elif stage_name in names:
            index = names.index(stage_name)
        else:
            raise TfftError(f"Unknown stage {stage_name!r}. The recipe's stages: {names}. Received: --stage {stage_name}")
        self._open_run()
        try:
            for before, stage in enumerate(self.stages[:index]):
                self._run_stage(before, stage)
            stage = self.stages[index]
            test = self.find_learning_rate(stage, steps=steps)
            self.range_tests[stage.name] = test
            self.logger.log_range_test(stage.name, test)
            _write_png(os.path.join(self.out_dir, "lr_find.png"), test.figure(f"stage '{stage.name}'"))
            evaluation.write_json(os.path.join(self.out_dir, "lr_find.json"), dict(
                stage=stage.name, suggestion=test.suggestion, rule=test.rule, stopped=test.stopped,
                rates=test.rates, losses=test.losses, smoothed=test.smoothed))
        finally:
            self.logger.close()
        return stage, test

    def _choose_schedule(self):
        from tfft import tuning

        # The search checks the recipe in a dry run first; only then is an old run replaced.
        winner, results, cost, full = tuning.run_auto(self.recipe, type(self), self.out_dir, verbose=self.verbose,
                                                      before=self._replace_old_run)
        table = tuning.results_table(results, winner.name)
        if self.verbose:
            print(f"schedule.kind='auto' chose '{winner.name}' ({winner.why}) on the held-out fold:\n{table}",
                  flush=True)
        self.search = dict(chosen=winner.name, why=winner.why, values=winner.values, steps=cost, run_steps=full,
                           cost=cost / full, holdout=tuning.HOLDOUT,
                           trials=[dataclasses.asdict(r) for r in results], table=table)
        self.recipe = self.recipe.with_overrides(tuning.as_overrides(winner.values))

    def _replace_old_run(self):
        if self.overwrite and os.path.isdir(self.out_dir) and not self._replaced:
            shutil.rmtree(self.out_dir)
        self._replaced = True

    def _open_run(self):
        """Create the run directory (replacing an old run only now that every check has
        passed), the TensorBoard logger and the checkpoints."""
        logger = TensorBoardLogger(
            os.path.join(self.out_dir, "tensorboard"),
            update_freq=self.recipe.output.log_every,
            group_learning_rates=self._group_learning_rates,
            epochs_done=lambda: self.current_position / self.steps_per_epoch,
        )
        self._replace_old_run()
        os.makedirs(self.out_dir, exist_ok=True)
        if self.verbose:
            print(f"run directory: {self.out_dir}\nwatch it with: tensorboard --logdir "
                  f"{os.path.join(self.out_dir, 'tensorboard')}", flush=True)
            if self.backbone.note:
                print(self.backbone.note, flush=True)
        self._write_recipe()
        self.logger = logger
        self.logger.set_model(self.model)
        step = int(np.asarray(self.optimizer.iterations))  # the model is not compiled yet
        self.logger.log_text("recipe", "```\n" + json.dumps(self.recipe.to_dict(), indent=2) + "\n```", step=step)
        self.logger.log_hparams(self.recipe.to_dict(), metrics=["val_loss", "val_accuracy", "loss", "accuracy"])
        self.checkpoint = StageCheckpoint(
            os.path.join(self.out_dir, "checkpoints"),
            monitor=self.recipe.train.monitor,
            mode=self._monitor_mode,
            state_fn=lambda: dict(self._stage_state, position=self.current_position),
        ) if self.save else None
        if self.search is not None:
            self.logger.log_text("search", f"**schedule.kind='auto'** chose `{self.search['chosen']}`: "
                                 f"{self.search['why']}\n\n{self.search['table']}", step=step)

    def _prepare(self, stage, learning_rate):
        """Freeze and unfreeze for `stage`, set its per-group factors and `learning_rate`
        (a schedule on the global step) and compile; return the trained group names."""
        trained = stage.trained_groups(self.group_names)
        factors = stage.factors(self.group_names)
        apply_freezing(self.groups, trained, stage.train_bn)
        self.group_optimizer.set_factors([(g.variables, factors[g.name]) for g in self.groups])
        self._factors = factors
        self.group_optimizer.learning_rate = learning_rate
        with self.strategy.scope():
            self.model.compile(
                optimizer=self.optimizer,
                loss=self.build_loss(),
                metrics=self.build_metrics(),
                jit_compile=self.recipe.runtime.jit_compile,
            )
        return trained

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
        try:
            self._prepare(stage, sweep)
            self.model.fit(self.datasets.train_stream(self.position), steps_per_epoch=1, epochs=steps,
                           class_weight=self.datasets.class_weights, shuffle=False, callbacks=[recorder], verbose=0)
        finally:
            snapshot.restore(self.model, self.optimizer)
        return RangeTest(recorder.rates, recorder.losses, recorder.smoothed,
                         suggest(recorder.rates, recorder.smoothed, RULE), f"{RULE}: {RULES[RULE]}", recorder.stopped)

    def _resolve_rate(self, index, stage):
        if stage.lr != FIND:
            return stage
        test = self.find_learning_rate(stage)
        self.range_tests[stage.name] = test
        if self.logger is not None:
            self.logger.log_range_test(stage.name, test)
            _write_png(os.path.join(self.out_dir, f"lr_find_{stage.name}.png"), test.figure(f"stage '{stage.name}'"))
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

    def _chance_loss(self):
        return math.log(2.0) if self.datasets.multi_label else math.log(self.num_classes)

    def _run_stage(self, index, stage):
        planned = stage
        stage = self._resolve_rate(index, stage)
        first_step = int(np.asarray(self.optimizer.iterations))
        trainable = 0
        for attempt in range(COLLAPSE_RETRIES + 1):
            start_step = int(np.asarray(self.optimizer.iterations))
            learning_rate = StageLearningRate(stage.lr, start_step, stage.steps, stage.shape, stage.warmup)
            trained = self._prepare(stage, learning_rate)
            snapshot = Snapshot.take(self.model, self.optimizer)
            self._stage_state = dict(stage_index=index, stage_name=stage.name, stage_start_step=start_step,
                                     stage_lr=stage.lr, attempt=attempt)
            trainable = sum(g.num_trainable_params for g in self.groups)
            if attempt == 0:
                self.logger.log_stage_begin(index, stage.name, trainable, self._stage_table(stage, trained, self._factors))
                if self.verbose:
                    print(f"stage {index + 1}/{len(self.stages)} '{stage.name}': {stage.steps} steps "
                          f"({stage.epochs:.3g} epochs), training {sorted(trained, key=self._group_order)} "
                          f"({trainable:,} parameters)", flush=True)
                self.on_stage_begin(stage, index)
            fit, progress, guard, batchnorm = self._fit(index, stage)
            self.position, self._progress = progress.position, None
            if guard.collapsed is None:
                break
            snapshot.restore(self.model, self.optimizer, keep_step=True)
            _, smoothed, threshold = guard.collapsed
            what = (f"stage '{stage.name}': the training loss rose to {smoothed:.3g} (from {guard.reference:.3g}; "
                    f"collapse threshold {threshold:.3g}, chance {guard.chance:.3g}) after {progress.done} steps")
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
        logs = {k: float(v[-1]) for k, v in fit.history.items()} if fit.history else {}
        self._last_loss = logs.get("loss", self._last_loss)
        if batchnorm and self.verbose:
            print(f"recomputed the statistics of {batchnorm[0]} BatchNorm layers over {batchnorm[1]} training "
                  "batches before each validation", flush=True)
        report, wrong = self._validation_report()
        if "confusion_matrix" in report:
            self.logger.log_confusion_matrix(np.array(report["confusion_matrix"]), self.datasets.class_names, stage.name)
        self.log_misclassified(stage, wrong)
        self.on_stage_end(stage, index, logs)
        end_step = int(np.asarray(self.optimizer.iterations))
        return dict(name=stage.name, steps=planned.steps, steps_run=end_step - first_step,
                    epochs=planned.epochs, lr=stage.lr, planned_lr=planned.lr, attempts=attempt + 1,
                    trainable_params=trainable, stage_end_accuracy=report["accuracy"], **logs)

    def _fit(self, index, stage):
        """One attempt at `stage`: `fit` for its steps from the current data position."""
        precise = self.recipe.schedule.precise_bn if stage.train_bn else 0
        batchnorm = []

        def recompute():
            batchnorm[:] = recompute_batchnorm_statistics(self.model, self.datasets.train, precise)

        self._validation = Validation(self.datasets.validation, self.build_loss(), self.datasets.multi_label,
                                      before=recompute if precise else None)
        progress = self._progress = StageProgress(self.position, stage.steps)
        guard = CollapseGuard(self._last_loss, self._chance_loss())
        callbacks = [c for c in (self._validation, progress, guard, self.logger, self.checkpoint) if c is not None]
        if stage.early_stopping:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=self.recipe.train.monitor, mode=self._monitor_mode, patience=stage.early_stopping))
        callbacks += self.build_callbacks(stage, index)
        period = self._validation_period(stage)
        rounds = math.ceil(stage.steps / period)
        fit = self.model.fit(
            self.datasets.train_stream(self.position),
            steps_per_epoch=period,
            initial_epoch=self._round,
            epochs=self._round + rounds,
            class_weight=self.datasets.class_weights,
            shuffle=False,  # the stream is shuffled; Keras would only warn
            callbacks=callbacks,
            verbose=self.verbose,
        )
        self._round += len(fit.epoch)
        return fit, progress, guard, batchnorm

    def _validation_report(self):
        """The validation report and the indices and labels of misclassified examples.

        Reuses the last validation pass when it scored these very weights.
        """
        last = self._validation.last if self._validation is not None else None
        if last is not None and last.step == int(np.asarray(self.optimizer.iterations)):
            labels, logits = last.labels, last.logits
        else:
            labels, logits = evaluation.predict_outputs(self.model, self.datasets.validation)
        names = self.datasets.class_names
        if self.datasets.multi_label:
            report = evaluation.multilabel_report(labels, logits, names)
            truth, predicted = labels > 0.5, logits > 0.0
            wrong = [(i, _names(names, truth[i]), _names(names, predicted[i]))
                     for i in np.flatnonzero(np.any(truth != predicted, axis=1))]
        else:
            y_true, y_pred = labels.reshape(-1).astype("int64"), np.argmax(logits, axis=-1)
            report = evaluation.classification_report(y_true, y_pred, names)
            wrong = [(i, names[y_true[i]], names[y_pred[i]]) for i in np.flatnonzero(y_true != y_pred)]
        return report, wrong

    def log_misclassified(self, stage, wrong, limit=8):
        """Show misclassified validation examples in TensorBoard at a stage's end.

        Override to show them differently. Text goes in a table; images as images; audio
        as clips beside their spectrograms.

        Args:
            stage: the `Stage` that ended.
            wrong: `(index, true_label, predicted_label)` of every misclassified example,
                in validation order.
            limit: how many examples to show.
        """
        validation = self.datasets.validation_examples
        if validation is None or not wrong:
            return
        shown = wrong[:limit]
        wanted = {index for index, _, _ in shown}
        raw = [example for i, (example, _) in enumerate(validation.take(max(wanted) + 1)) if i in wanted]
        kind = self.recipe.data.kind
        features = audio_features(self.recipe.data) if kind == "audio" else None
        examples.log_misclassified(self.logger, f"misclassified/{stage.name}", kind, raw, shown, len(wrong), features)

    def _evaluate(self, history):
        report, _ = self._validation_report()
        report["split"] = "validation"
        report["stages"] = history
        if self.checkpoint is not None:
            report["best_checkpoint"] = {self.recipe.train.monitor: self.checkpoint.best_value}
        if self.search is not None:
            report["search"] = {k: v for k, v in self.search.items() if k != "table"}
        evaluation.write_json(os.path.join(self.out_dir, "metrics.json"), report)
        return report

    def _save_model(self):
        # An uncompiled twin sharing the weights: `model.keras` then holds no optimizer state
        # (three times the weights for Adam) and loads with plain Keras, no tfft import.
        # Saved under a temporary name and renamed, so `model.keras` is always whole.
        final = os.path.join(self.out_dir, "model.keras")
        partial = os.path.join(self.out_dir, "model.partial.keras")
        keras.Model(self.model.input, self.model.output, name=self.model.name).save(partial)
        os.replace(partial, final)

    @property
    def _monitor_mode(self):
        return "min" if "loss" in self.recipe.train.monitor else "max"

    def _group_learning_rates(self):
        lr = float(keras.ops.convert_to_numpy(self.group_optimizer.learning_rate))
        return {name: lr * factor for name, factor in self._factors.items()}

    def _group_order(self, name):
        return [g.name for g in self.groups].index(name)

    def _stage_table(self, stage, trained, factors):
        rows = ["| group | trains | trainable params | lr factor |", "|---|---|---|---|"]
        for g in self.groups:
            rows.append(f"| {g.name} | {'yes' if g.name in trained else 'no'} | {g.num_trainable_params:,} | {factors[g.name]:.4g} |")
        return (f"**{stage.name}**: {stage.steps} steps ({stage.epochs:.3g} epochs; {stage.why}), lr {stage.lr:g} "
                f"({stage.shape})\n\n{stage.purpose}\n\n" + "\n".join(rows))

    def _check_out_dir(self):
        if self._replaced:
            return  # a search of this run wrote there already
        if os.path.isdir(self.out_dir) and os.listdir(self.out_dir) and not self.overwrite:
            raise TfftError(
                f"Run directory {self.out_dir} already holds files: pass --out to another directory "
                "or --overwrite to replace them."
            )

    def _write_recipe(self):
        evaluation.write_json(os.path.join(self.out_dir, "recipe.json"), self.recipe.to_dict())
        if self.recipe.source and os.path.isfile(self.recipe.source):
            shutil.copyfile(self.recipe.source, os.path.join(self.out_dir, "recipe.py"))


def batchnorm_layers_of(group):
    """BatchNorm layers inside a group's layers."""
    return [bn for layer in group.layers for bn in batchnorm_layers(layer)]


def _names(class_names, flags):
    return ", ".join(name for name, flag in zip(class_names, flags) if flag) or "(none)"


def _default_run_dir(recipe):
    name = os.path.splitext(os.path.basename(recipe.source))[0] if recipe.source else "run"
    return os.path.join("runs", name)


def _write_png(path, image):
    import tensorflow as tf

    with open(path, "wb") as file:
        file.write(tf.io.encode_png(image).numpy())


class _SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on logits with label smoothing, for integer labels."""

    def __init__(self, num_classes, smoothing, name="smoothed_crossentropy"):
        super().__init__(name=name)
        self.num_classes = num_classes
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        one_hot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32"), self.num_classes)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, from_logits=True, label_smoothing=self.smoothing)
