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
import hashlib
import json
import os
import shutil
import tempfile
from typing import Optional

import keras
import numpy as np

from tfft import adapters, evaluation, feature_cache, model_file, modalities, multi_worker, rundir
from tfft.batchnorm import batchnorm_layers
from tfft.callbacks.checkpoints import CheckpointStore, RunCheckpoints, load_checkpoint
from tfft.callbacks.guards import EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_PEER_LOST, SIGNALS, Interruption, weights_finite
from tfft.callbacks.tensorboard import FINAL_METRICS, TensorBoardLogger, truncate_events
from tfft.data.build import datasets_from_recipe
from tfft.distribute import batches_for_replicas, install_replica_seeds, mixed_precision_policy, resolve_strategy
from tfft.errors import RecipeError, TfftError
from tfft.freezing import HEAD, LayerGroup, layer_groups, restore_dropout
from tfft.lora import adapter_plan
from tfft.optimizers import make_optimizer
from tfft.recipe import Recipe, check_modality_keys
from tfft.schedules import FIND, build_stages, plan_steps
from tfft.stage_loop import StageLoop, Stopped

# `train.on_nan="rollback"` goes back to the last good checkpoint this many times at most.
NAN_ROLLBACKS = 3


class RunStopped(TfftError):
    """A run stopped before its end and can be resumed (`exit_code`: 143 on SIGTERM, 130
    on SIGINT, 3 on a non-finite loss)."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


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
        features: for a stage that trains the head alone, `"cached"` when it trains on the
            frozen backbone's outputs computed once (`tfft.feature_cache`), else why not;
            None for a stage that trains backbone groups.
        adapted: the groups the stage trains through LoRA adapters, bottom to top (their
            rows count the adapters' parameters); empty when it trains full weights only.
        adapters: `{group: tfft.adapters.GroupAdapters}` of those that have adapters (a
            group without a layer LoRA adapts has none, and nothing in it trains).
    """

    index: int
    stage: object
    bounds: tuple
    steps: int
    epochs: float
    groups: list
    batchnorm_trains: bool = False
    features: Optional[str] = None
    adapted: tuple = ()
    adapters: dict = dataclasses.field(default_factory=dict)

    @property
    def trainable_params(self):
        return sum(row[2] for row in self.groups)


class Trainer(StageLoop):
    """Runs a recipe: staged fine-tuning of a pretrained backbone with a new head.

    Args:
        recipe: a `tfft.Recipe` (default: every default value).
        out_dir: run directory; default `recipe.output.dir`, else `runs/<recipe name>`.
        overwrite: replace a run directory that already holds files, once the new run has
            finished (it trains beside the old one until then).
        verbose: 0 for quiet; otherwise progress: Keras's bar with its ETA on a terminal,
            and in a log file one line per epoch with a step line (pace, stage and run
            ETA) every 30 seconds between (`tfft.callbacks.progress`).
        dry_run: build the architecture without loading pretrained weights and without
            decoding every image (what `plan` needs); the BatchNorm policy still follows
            the recipe's weights.
        save: write checkpoints and `model.keras` (False for the trials of a search).
        resume: `"auto"`: continue an interrupted run of the same recipe found in `out_dir`;
            True: insist on it (an error when there is none, or the recipe differs); False:
            never (a directory holding a run is then refused without `overwrite`).

    Example:
        >>> recipe = tfft.load_recipe("recipes/tumor_resnet.py", demo=True)
        >>> result = tfft.Trainer(recipe, out_dir="runs/demo").run()
        >>> result["accuracy"]
    """

    # A process of a cluster (TF_CONFIG, Slurm) trains as one of its workers; `tfft lr-find`,
    # a one-process tool, sets this False to train alone whatever the environment says.
    join_cluster = True

    def __init__(self, recipe=None, out_dir=None, overwrite=False, verbose=2, dry_run=False, save=True, resume="auto"):
        self.recipe = recipe or Recipe()
        self.dry_run = dry_run
        self.save = save
        self.resume = resume
        self.out_dir = out_dir or self.recipe.output.dir or _default_run_dir(self.recipe)
        self.target_dir = self.out_dir
        self.overwrite = overwrite
        self.verbose = verbose
        self.strategy = None
        self.backbone = None
        self.datasets = None
        # Normalisation statistics of a trained model to use instead of computing them from
        # the training split (`Datasets.statistics`; `tfft evaluate` sets them).
        self.statistics = None
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
        self._history = []
        self._best_scores = None
        self._lock = None
        self._claim = None
        # Under a multi-worker strategy: this process's task; a worker other than the chief
        # trains in a directory of its own (`_scratch`), removed when the run ends.
        self.task = None
        self._scratch = None
        self.search = None
        self.final_wrong = None  # after `run`: indices of the validation examples the final model gets wrong
        self.checkpoints = None
        self.store = None
        self.interruption = Interruption(self._save_on_signal)
        self.planned_stages = None
        self._feature_cache = None  # a head-only stage's features (`tfft.feature_cache`)
        self._pairs = None  # a pairs stage's model (`tfft.pairs`)
        self.adapters = {}  # `{group: tfft.adapters.GroupAdapters}` of the groups a stage adapts (LoRA)
        self._adapted = set()
        self._built = False

    # -- hooks: override any of these ------------------------------------------------------

    def build_strategy(self):
        """Return the `tf.distribute.Strategy` (default: from `runtime.strategy`; a dry run,
        or a trainer whose `join_cluster` is False, never joins a cluster)."""
        return resolve_strategy(self.recipe.runtime.strategy, self.recipe.runtime.devices,
                                cluster=self.join_cluster and not self.dry_run)

    def build_backbone(self):
        """Return a `tfft.backbones.Backbone` (model, preprocessing, group rules).

        Called under the strategy scope.
        """
        from tfft.backbones import build_backbone  # keeps `import tfft` light

        config = self.recipe.backbone
        modality = modalities.get(self.recipe.data.kind)
        return build_backbone(config.name, weights=config.weights, input_size=config.input_size, family=config.family,
                              modality=self.recipe.data.kind, load_weights=not self.dry_run,
                              **modality.backbone_options(self.recipe))

    def build_datasets(self):
        """Return a `tfft.data.Datasets` for `data.kind`.

        `self.backbone` is built already: its preprocessing and input size are used.
        """
        return datasets_from_recipe(
            self.recipe.data, self.backbone, self.recipe.backbone.input_size, dry_run=self.dry_run, verbose=self.verbose,
            statistics=self.statistics,
        )

    def build_head(self, features):
        """Return the head's output logits for the backbone's `features` (a symbolic tensor).

        The default is the task's (`tfft.tasks`): for classification it pools 4D features
        (`head.pooling`), applies dropout and an optional hidden layer, and ends in a
        float32 `Dense(num_classes)` (logits); for `data.task="tokens"`, the same per token.
        """
        return self.data_task.build_head(features, self.recipe.head, self.num_classes)

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
        """Return the loss: cross-entropy on logits (a sigmoid per class when multi-label;
        per token, ignoring the pieces that carry no tag, for `data.task="tokens"`)."""
        return self.data_task.build_loss(self.datasets, self.recipe.train)

    def build_metrics(self):
        """Return the metrics compiled with the model."""
        return self.data_task.build_metrics(self.datasets)

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

    @property
    def data_task(self):
        """What the model predicts per example, as `data.task` says: a `tfft.tasks.Task`."""
        from tfft import tasks

        return tasks.of(self.recipe.data)

    def setup(self):
        """Build strategy, backbone, data, model, groups, schedule and optimizer.

        Everything that can be wrong with a recipe fails here, before any training.
        """
        if self._built:
            return
        runtime = self.recipe.runtime
        _check_train(self.recipe.train)
        check_modality_keys(self.recipe.data)
        if runtime.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        log_every = self.recipe.output.log_every
        if isinstance(log_every, bool) or log_every < 1:
            raise RecipeError(f"output.log_every must be at least 1 step. Received: output.log_every={log_every!r}")
        if self.recipe.output.checkpoints not in CHECKPOINTS_KEPT:
            raise RecipeError(f"output.checkpoints must be one of {list(CHECKPOINTS_KEPT)}. "
                              f"Received: output.checkpoints={self.recipe.output.checkpoints!r}")
        every = runtime.steps_per_execution
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise RecipeError(f"runtime.steps_per_execution must be a whole number of steps, at least 1. "
                              f"Received: runtime.steps_per_execution={every!r}")
        if self.recipe.train.validate_every is not None and self.recipe.train.validate_every < 1:
            raise TfftError(f"train.validate_every must be at least 1 step. Received: "
                            f"train.validate_every={self.recipe.train.validate_every!r}")
        keras.utils.set_random_seed(runtime.seed)
        self.strategy = self.build_strategy()
        if self.strategy.num_replicas_in_sync > 1:
            install_replica_seeds()
            multi_worker.install_keras_fixes()
        policy = mixed_precision_policy(runtime.mixed_precision, self.strategy)
        keras.mixed_precision.set_global_policy(policy or "float32")
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
            self.stages = self._with_pairs_reason(
                build_stages(self._resolved_schedule(), self.group_names, self.steps_per_epoch))
            self.planned_stages = list(self.stages)
            # Adapters are variables a stage trains: they exist before the optimizer is built.
            self.adapters = adapters.enable(self.groups, adapter_plan(self.stages, self.group_names),
                                            self.group_names, self.backbone.lora_layers)
            self.optimizer = self.build_optimizer()
            # Build over every variable any stage will train, once, so that unfreezing a
            # group later neither raises `Unknown variable` nor resets the head's moments;
            # and over those only, so that weights no stage trains (a group never unfrozen,
            # pretrained kernels under LoRA adapters) get no optimizer state.
            self.optimizer.build(self._variables_trained())
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
        # LoRA adapters start at zero change and have no pretrained value: they decay
        # toward zero (train.weight_decay) like the head.
        own = {id(v) for v in adapters.adapter_variables(self.adapters)}
        pairs = [(v, keras.Variable(np.array(v), trainable=False, name="l2_sp_anchor"))
                 for g in self.groups if g.name != HEAD for v in g.trainable_candidates if id(v) not in own]
        self.group_optimizer.set_anchors(pairs, strength)

    def _resolved_schedule(self):
        schedule = self.recipe.schedule
        if schedule.kind == "auto":
            # Planned as the recommended candidate; `run` chooses before it sets up.
            from tfft.tuning import recommended_schedule

            values = {k.split(".", 1)[1]: v for k, v in recommended_schedule().items()}
            schedule = dataclasses.replace(schedule, **values)
        if schedule.pairs == "auto":
            schedule = dataclasses.replace(schedule, pairs=self.pairs_by_default() is not None)
        if schedule.train_bn == "auto":
            return dataclasses.replace(schedule, train_bn=not self.backbone.pretrained)
        return schedule

    def _with_pairs_reason(self, stages):
        """Check that pairs stages suit the task; say in their `why` when `"auto"` chose one."""
        if not any(stage.objective == "pairs" for stage in stages):
            return stages
        if not self.pairs_eligible():
            raise RecipeError(
                "A pairs stage pulls together examples of one class, so it needs one class per example "
                f"(single-label classification). Received: task {self.data_task.name!r}"
                + (" with multi-label data" if self.datasets.multi_label else "")
                + "; set schedule.pairs=False or drop the stage's objective='pairs'.")
        reason = self.pairs_by_default() if self.recipe.schedule.pairs == "auto" else None
        return [dataclasses.replace(s, why=f"{reason}; {s.why}") if s.objective == "pairs" and reason else s
                for s in stages]

    def pairs_eligible(self):
        """Whether a pairs stage suits the task: one class per example."""
        return not self.datasets.multi_label and self.data_task.name == "classify"

    def pairs_by_default(self):
        """Why `schedule.pairs="auto"` makes `two_phase` a pairs stage and a head stage
        (`tfft.pairs`), or None when it does not: the recommended `two_phase`, a pretrained
        backbone, one class per example, and at most the modality's `pairs_up_to` training
        examples per class."""
        from tfft import modalities

        up_to = modalities.get(self.recipe.data.kind).pairs_up_to
        per_class = self.datasets.num_train / max(1, self.datasets.num_classes)
        if (not up_to or per_class > up_to or self.recipe.schedule.kind not in ("two_phase", "auto")
                or not self.backbone.pretrained or not self.pairs_eligible()):
            return None
        return (f"schedule.pairs='auto': {per_class:.3g} training examples per class, at most {up_to} "
                f"for data.kind={self.recipe.data.kind!r}")

    @property
    def current_position(self):
        """Training batches consumed so far, counting those of the stage running now."""
        return self._progress.position if self._progress is not None else self.position

    @property
    def is_chief(self):
        """Whether this process writes the run directory: always, but for the workers other
        than the chief of a multi-worker run (`tfft.multi_worker`)."""
        return self.task is None or self.task.is_chief

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
            trained, _ = self._freeze(stage)
            factors = stage.factors(self.group_names)
            rates = {g.name: None if stage.lr == FIND else stage.lr * factors[g.name] for g in self.groups}
            rows = [(g.name, g.name in trained, g.num_trainable_params, rates[g.name]) for g in self.groups]
            batchnorm = stage.train_bn and any(
                layer.trainable for g in self.groups if g.name in trained for layer in batchnorm_layers_of(g))
            features = None
            if set(trained) == {HEAD}:
                features = feature_cache.why_not(self, stage) or "cached"
            adapted = tuple(name for name in self.group_names if name in self._adapted)
            plans.append(StagePlan(index, stage, bounds, stage.steps, stage.steps / self.steps_per_epoch, rows,
                                   batchnorm, features, adapted,
                                   {name: self.adapters[name] for name in adapted if name in self.adapters}))
        return plans

    # -- running ---------------------------------------------------------------------------

    def run(self):
        """Run every stage, evaluate and save. Returns the metrics written to `metrics.json`.

        With `schedule.kind="auto"`, the schedule is chosen first on held-out training data
        (`tfft.tuning.run_auto`), then the winner trains on the whole training split. An
        interrupted run of the same recipe in the run directory is resumed where its newest
        checkpoint left it (see `resume`).

        Raises:
            RunStopped: SIGTERM or SIGINT (after a checkpoint), or a non-finite loss.
        """
        self.claim()
        try:
            resumed = self._claim
            if resumed is None and self.recipe.schedule.kind == "auto":
                self._choose_schedule()
            elif resumed is not None and resumed.get("search"):
                self.search = resumed["search"]
                self.recipe = self.recipe.with_overrides(_overrides(self.search["values"]))
            self.setup()
            self._open_run(resumed)
            try:
                with self.interruption:
                    history = self._train(resumed)
                metrics = self._evaluate(history)
                if self.save:
                    self._save_model()
                    self._thin_checkpoints()
                self.logger.log_run_end(metrics, self._final_metrics())
            finally:
                self.logger.close()
            if self.out_dir != self.target_dir:
                rundir.swap_in(self.out_dir, self.target_dir)
                self.out_dir = self.target_dir
        finally:
            self.release()
        return metrics

    def claim(self):
        """Lock the run directory and decide where this run trains and whether it resumes.

        `run` calls it; call it first yourself to write beside the run before it starts
        (as `tfft tune` writes its trials). Idempotent until `release`.
        """
        if self.recipe.runtime.strategy in ("auto", "multi_worker") and self.join_cluster and not self.dry_run:
            self.task = multi_worker.cluster_from_environment()
        if self.task is not None and not self.task.is_chief:
            if self._scratch is None:
                self._claim = self._claim_as_worker()
            return self._claim
        if self._lock is None:
            self._lock = rundir.RunLock(self.target_dir).acquire()
            try:
                self._claim = self._claim_directory()
            except BaseException:
                self.release()
                raise
        return self._claim

    def release(self):
        """Give up the run directory's lock (a worker other than the chief: remove its files)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _claim_as_worker(self):
        """A worker other than the chief takes the chief's decision on the run directory
        (the same checks, so that it fails as the chief does rather than wait for it) and
        trains in a temporary directory, starting from a copy of the chief's checkpoints
        when the run resumes."""
        shared = self._claim_directory(change=False)
        where = self.out_dir
        # One directory per run directory and task: a worker killed before its cleanup
        # leaves it behind, and its restart empties it.
        key = hashlib.sha256(os.path.abspath(self.target_dir).encode()).hexdigest()[:12]
        self._scratch = os.path.join(tempfile.gettempdir(), f"tfft-{key}-{self.task.kind}{self.task.index}")
        shutil.rmtree(self._scratch, ignore_errors=True)
        os.makedirs(self._scratch)
        self.out_dir = self.target_dir = self._scratch
        if self.verbose:
            print(f"{self.task}: the chief writes {where}; this worker's own files go to {self._scratch} and are "
                  "removed when the run ends", flush=True)
            self.verbose = 0
        if shared is None:
            return None
        shutil.copytree(os.path.join(where, rundir.CHECKPOINTS), os.path.join(self._scratch, rundir.CHECKPOINTS))
        shutil.copy2(os.path.join(where, rundir.RECIPE_FILE), self._scratch)
        return dict(shared, directory=self._scratch)

    def _claim_directory(self, change=True):
        """Decide where this run trains and whether it resumes; returns what to resume
        from (`{"directory", "search"}`), or None for a fresh run. `change=False` decides
        only, removing nothing."""
        target = self.target_dir
        staging = rundir.sibling(target, "next")
        found = rundir.state_of(target)
        where = staging if self.overwrite and found != "empty" else target
        self.out_dir = where
        here = rundir.state_of(where)
        if here == "interrupted" and self.resume is not False:
            differences = rundir.recipe_differences(rundir.saved_recipe(where), self.recipe.to_dict())
            newest = None if differences else _newest_state(os.path.join(where, "checkpoints"))
            if newest is not None:
                return {"directory": where, "search": newest.get("search")}
            if where == target:
                raise TfftError(
                    f"Run directory {target} holds an interrupted run of another recipe: {', '.join(differences)} "
                    "differ. Give the same recipe to resume it, or --overwrite to start again." if differences else
                    f"Run directory {target} holds an interrupted run with no whole checkpoint to resume from: "
                    "--overwrite to start again.")
        if self.resume is True:
            raise TfftError(f"Nothing to resume in {target}: it holds {_describe_state(found)}.")
        if where == staging:
            if change:
                shutil.rmtree(staging, ignore_errors=True)  # an unfinished replacement of another recipe
        elif here == "started" and self.resume is not False:
            differences = rundir.recipe_differences(rundir.saved_recipe(where), self.recipe.to_dict())
            if differences:
                raise TfftError(f"Run directory {target} holds a run of another recipe that stopped before its first "
                                f"checkpoint: {', '.join(differences)} differ. Give the same recipe to start it "
                                "again, or --overwrite.")
            # Nothing to resume and nothing of value: start again in place, on fresh logs.
            if change:
                shutil.rmtree(os.path.join(where, "tensorboard"), ignore_errors=True)
        elif here == "finished":
            raise TfftError(f"Run directory {target} holds a finished run: pass --out to another directory or "
                            "--overwrite to replace it (the old run stays until the new one has finished).")
        elif here != "empty":
            raise TfftError(f"Run directory {target} already holds {_describe_state(here)}: pass --out to another "
                            "directory or --overwrite to replace it.")
        return None

    def _train(self, resumed):
        """The stage loop, with resuming and rolling back on a non-finite loss."""
        rollbacks = 0
        start = self._restore(resumed) if resumed is not None else None
        while True:
            try:
                first = 0 if start is None else start["stage_index"]
                for index in range(first, len(self.stages)):
                    partial = start if start is not None and index == first else None
                    self._history.append(self._run_stage(index, self.stages[index], partial))
                self._feature_cache = None
                feature_cache.remove(self.out_dir)
                restore_dropout(self.model)  # the model leaves as it was built (and is saved so)
                return list(self._history)
            except multi_worker.PEER_LOST as error:
                if self.task is None:
                    raise
                raise RunStopped(multi_worker.peer_lost_message(error, self.task, self.store), EXIT_PEER_LOST) from None
            except Stopped as stop:
                where = (f"stage {stop.index + 1}/{len(self.stages)} '{stop.stage.name}', step {stop.done} of "
                         f"{stop.stage.steps} (global step {stop.step}, epoch {self.current_position / self.steps_per_epoch:.2f})")
                # A replacement (--overwrite) trains beside the old run: the same command resumes it.
                resume = (f"tfft resume {self.target_dir}" if self.out_dir == self.target_dir else
                          f"the same tfft run command with --overwrite (the finished run in {self.target_dir} "
                          "stays until this one ends)")
                if stop.reason == "interrupted":
                    raise RunStopped(f"{SIGNALS[stop.signal]}: stopped at {where} with a checkpoint; "
                                     f"resume with: {resume}", EXIT_INTERRUPTED[stop.signal]) from None
                policy = self.recipe.train.on_nan
                if policy == "stop" or rollbacks == NAN_ROLLBACKS:
                    raise RunStopped(f"non-finite loss at {where}; the last good checkpoint is kept and no model "
                                     "was saved: lower the rate"
                                     + (f" (rolled back {rollbacks} times already)" if rollbacks else
                                        ", or set train.on_nan='rollback'"),
                                     EXIT_DIVERGED) from None
                rollbacks += 1
                start = self._roll_back(stop)

    def _roll_back(self, stop):
        """`train.on_nan="rollback"`: back to the newest good checkpoint (or the run's start),
        the diverging stage at half its rate."""
        state = self.store.load_latest(self.model, self.optimizer) if self.store is not None else None
        if state is None:
            self._initial.restore(self.model, self.optimizer)
            self.position, self._round, self._history, self._last_loss = 0, 0, [], None
            start, step = None, 0
        else:
            start = self._restore_run_state(state)
            step = state["step"]
        lower = stop.stage.lr / 2
        self.stages[stop.index] = dataclasses.replace(self.stages[stop.index], lr=lower)
        truncate_events(os.path.join(self.out_dir, "tensorboard"), step)
        print(f"non-finite loss at stage '{stop.stage.name}', global step {stop.step}: rolled back to step {step}; "
              f"the stage goes on at lr {lower:.3g}", flush=True)
        return start

    def _restore(self, resumed):
        """Load the newest whole checkpoint of an interrupted run; returns its run state."""
        state = self.store.load_latest(self.model, self.optimizer)
        start = self._restore_run_state(state)
        dropped = truncate_events(os.path.join(self.out_dir, "tensorboard"), state["step"])
        if self.verbose:
            print(f"resuming {self.out_dir} from its checkpoint at global step {state['step']} "
                  f"(stage {start['stage_index'] + 1} '{start['stage_name']}'"
                  + (f"; {dropped} TensorBoard points written after it were dropped" if dropped else "") + ")",
                  flush=True)
        return start

    def _run_state(self):
        """Everything besides the weights a resumed run needs, as JSON."""
        return dict(self._stage_state, step=int(np.asarray(self.optimizer.iterations)), position=self.current_position,
                    round=self._round, last_loss=self._last_loss, history=self._history,
                    stage_lrs=[s.lr for s in self.stages], search=self.search,
                    best=self.checkpoints.best_info if self.checkpoints is not None else None)

    def _restore_run_state(self, state):
        self.position, self._round = state["position"], state["round"]
        self._last_loss, self._history = state["last_loss"], list(state["history"])
        self.stages = [dataclasses.replace(s, lr=lr) for s, lr in zip(self.stages, state["stage_lrs"])]
        if self.checkpoints is not None and state.get("best"):
            self.checkpoints.best_info = dict(state["best"])
            self.checkpoints.best_value = state["best"]["value"]
        return state

    def _save_on_signal(self, logs):
        if self.checkpoints is None:
            return False
        return self.checkpoints.save_now(logs)

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
        self.claim()
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
            self._write_range_test(stage.name, test, "lr_find.png")
            evaluation.write_json(os.path.join(self.out_dir, "lr_find.json"), dict(
                stage=stage.name, suggestion=test.suggestion, rule=test.rule, stopped=test.stopped,
                rates=test.rates, losses=test.losses, smoothed=test.smoothed))
        finally:
            self.logger.close()
            self.release()
        if self.out_dir != self.target_dir:
            rundir.swap_in(self.out_dir, self.target_dir)
            self.out_dir = self.target_dir
        return stage, test

    def _choose_schedule(self):
        from tfft import tuning

        # The search checks the recipe in a dry run first; only then is an old run replaced.
        winner, results, cost, full = tuning.run_auto(self.recipe, type(self), self.out_dir, verbose=self.verbose,
                                                      before=lambda: os.makedirs(self.out_dir, exist_ok=True))
        table = tuning.results_table(results, winner.name)
        note = tuning.choice_note(results, winner.name)
        if self.verbose:
            print(f"schedule.kind='auto' chose '{winner.name}' ({winner.why}) on the held-out fold:\n{table}"
                  + (f"\n{note}" if note else ""), flush=True)
        self.search = dict(chosen=winner.name, why=winner.why, note=note, values=winner.values, steps=cost,
                           run_steps=full, cost=cost / full, holdout=tuning.HOLDOUT,
                           trials=[dataclasses.asdict(r) for r in results], table=table)
        self._given_recipe = self.recipe
        self.recipe = self.recipe.with_overrides(tuning.as_overrides(winner.values))

    def _open_run(self, resumed=None):
        """Create the run directory, the TensorBoard logger and the checkpoints; on a resume,
        reopen them."""
        self.logger = TensorBoardLogger(
            os.path.join(self.out_dir, "tensorboard"),
            update_freq=self.recipe.output.log_every,
            group_learning_rates=self._group_learning_rates,
            epochs_done=lambda: self.current_position / self.steps_per_epoch,
        )
        os.makedirs(self.out_dir, exist_ok=True)
        if self.verbose:
            print(f"run directory: {self.out_dir}\nwatch it with: tensorboard --logdir "
                  f"{os.path.join(self.out_dir, 'tensorboard')}", flush=True)
            if self.backbone.note:
                print(self.backbone.note, flush=True)
        if resumed is None:
            self._write_recipe()
        if self.datasets.skipped:
            path = os.path.join(self.out_dir, "skipped.txt")
            with open(path, "w", encoding="utf-8") as file:
                file.writelines(f"{name}\t{reason}\n" for name, reason in self.datasets.skipped)
            print(f"left out {len(self.datasets.skipped)} files that cannot be read (data.on_error='skip'): see {path}",
                  flush=True)
        self.logger.set_model(self.model)
        if self.save:
            self.store = CheckpointStore(os.path.join(self.out_dir, "checkpoints"),
                                         keep=CHECKPOINTS_KEPT[self.recipe.output.checkpoints][0])
            cleaned = self.store.clean()
            if cleaned and self.verbose:
                print(f"removed {cleaned} temporary checkpoint folders left by an interrupted save", flush=True)
            every = self.recipe.train.checkpoint_every
            self.checkpoints = RunCheckpoints(
                self.store, monitor=self.recipe.train.monitor, mode=self._monitor_mode, state_fn=self._run_state,
                every_steps=every if isinstance(every, int) else None,
                every_seconds=_seconds(every) if isinstance(every, str) else None,
                healthy=lambda: weights_finite(self.model), on_best=self._keep_best_scores,
                skip=lambda: self.interruption.signal is not None)
        from tfft.snapshot import Snapshot

        self._initial = Snapshot.take(self.model, self.optimizer)
        if resumed is not None:
            return
        step = int(np.asarray(self.optimizer.iterations))  # the model is not compiled yet
        self.logger.log_text("recipe", "```\n" + json.dumps(self.recipe.to_dict(), indent=2) + "\n```", step=step)
        self.logger.log_hparams(self.recipe.to_dict(), metrics=["val_loss", "val_accuracy", "loss", "accuracy"]
                                + [f"final/{name}" for name in self._final_metrics()])
        if self.search is not None:
            note = f"\n\n{self.search['note']}" if self.search.get("note") else ""
            self.logger.log_text("search", f"**{self.search.get('why', 'search')}**: chose `{self.search['chosen']}`"
                                 f"\n\n{self.search.get('table', '')}{note}", step=step)

    def _final_metrics(self):
        """The report's figures the hparams dashboard shows for the final model: the task's
        headline (a tagging run's `entity_f1`) and the classification figures it has."""
        return tuple(dict.fromkeys((self.data_task.headline, *FINAL_METRICS)))

    def _keep_best_scores(self, state):
        last = self._validation.last if self._validation is not None else None
        if last is None:
            return None
        self._best_scores = last
        return {"scores.npz": {"labels": last.labels, "logits": last.logits, "step": np.array(last.step)}}

    def _write_range_test(self, name, test, file_name=None):
        _write_png(os.path.join(self.out_dir, file_name or f"lr_find_{name}.png"), test.figure(f"stage '{name}'"))

    def _validation_report(self):
        """The validation report and the indices and labels of misclassified examples.

        Reuses the last validation pass when it scored these very weights.
        """
        last = self._validation.last if self._validation is not None else None
        if last is not None and last.step == int(np.asarray(self.optimizer.iterations)):
            labels, logits = last.labels, last.logits
        else:
            labels, logits = evaluation.predict_outputs(self.model, self.datasets.validation)
        return self._report(labels, logits)

    def _report(self, labels, logits):
        return self.data_task.report(labels, logits, self.datasets)

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
        modalities.get(self.recipe.data.kind).log_misclassified(
            self.logger, f"misclassified/{stage.name}", raw, shown, len(wrong), self.recipe.data)

    def _evaluate(self, history):
        last, wrong = self._validation_report()
        report = last
        best = self.checkpoints.best_info if self.checkpoints is not None else None
        if self._restores_best() and best is not None and best["step"] != int(np.asarray(self.optimizer.iterations)):
            # The final model is the best validation's; `last` reports the last weights.
            load_checkpoint(self.store.best_directory, self.model, self.optimizer)
            with np.load(os.path.join(self.store.best_directory, "scores.npz")) as scores:
                report, wrong = self._report(scores["labels"], scores["logits"])
            keys = dict.fromkeys(("accuracy", "macro_f1", "num_examples", self.data_task.headline))
            report["last"] = {k: last[k] for k in keys if k in last}
        report["split"] = "validation"
        report["stages"] = history
        if best is not None:
            report["best"] = dict(step=best["step"], epoch=best["position"] / self.steps_per_epoch,
                                  monitor=self.recipe.train.monitor, value=best["value"],
                                  restored=self._restores_best() and "last" in report)
        if self.search is not None:
            report["search"] = {k: v for k, v in self.search.items() if k != "table"}
        report["loss"] = self._final_loss(report)
        # Which validation examples the final model gets wrong: how `auto` compares two
        # trials example by example on the same held-out fold.
        self.final_wrong = frozenset(index for index, _, _ in wrong)
        evaluation.write_json(os.path.join(self.out_dir, "metrics.json"), report)
        return report

    def _final_loss(self, report):
        """The validation loss of the final model, as a validation computes it: on the
        predictions `report` was made from (the best validation's when it was restored)."""
        if report.get("best", {}).get("restored"):
            with np.load(os.path.join(self.store.best_directory, "scores.npz")) as scores:
                labels, logits = scores["labels"], scores["logits"]
        else:
            last = self._validation.last if self._validation is not None else None
            if last is not None and last.step == int(np.asarray(self.optimizer.iterations)):
                labels, logits = last.labels, last.logits
            else:
                labels, logits = evaluation.predict_outputs(self.model, self.datasets.validation)
        loss = self._validation.loss if self._validation is not None else self.build_loss()
        value = float(keras.ops.convert_to_numpy(loss(labels, logits.astype("float32"))))
        return value + float(sum(float(keras.ops.convert_to_numpy(extra)) for extra in self.model.losses))

    def _restores_best(self):
        """`train.restore_best`; `"auto"`: only when the validation split was carved from the
        training data (a `validation_path` or a demo set's test file may be a test set, never
        to be chosen on)."""
        setting = self.recipe.train.restore_best
        if setting == "auto":
            data = self.recipe.data
            separate = self.datasets is not None and self.datasets.separate_validation
            return data.validation_path is None and not (data.tfds and data.tfds_split[1]) and not separate
        return bool(setting)

    def _save_model(self):
        # An uncompiled twin sharing the weights: `model.keras` then holds no optimizer state
        # (three times the weights for Adam) and loads with plain Keras, no tfft import.
        # Saved under a temporary name and renamed, so `model.keras` is always whole.
        final = os.path.join(self.out_dir, "model.keras")
        partial = os.path.join(self.out_dir, "model.partial.keras")
        # LoRA adapters are merged into the kernels: the file holds plain layers.
        adapters.merged_copy(keras.Model(self.model.input, self.model.output, name=self.model.name)).save(partial)
        model_file.write_metadata(partial, self._model_metadata())
        with tempfile.TemporaryDirectory() as directory:
            modalities.get(self.recipe.data.kind).save_preprocessing(self.backbone, directory)
            model_file.write_assets(partial, directory)
        os.replace(partial, final)

    def _thin_checkpoints(self):
        """`output.checkpoints`: a finished run resumes no more, so `"resume"` removes its
        full checkpoints (each holds the optimizer, twice the weights again for Adam)."""
        kept = CHECKPOINTS_KEPT[self.recipe.output.checkpoints][1]
        if kept is None:
            return
        freed = self.store.remove_steps(kept)
        if freed and self.verbose:
            print(f"removed the full checkpoints kept for a resume ({freed / 1e6:.1f} MB; output.checkpoints="
                  f"{self.recipe.output.checkpoints!r})", flush=True)

    def _model_metadata(self):
        """`tfft.json` of `model.keras` (`tfft.model_file`): what another recipe needs to use
        this model as its backbone, and what a user needs to read its outputs."""
        shape = self.backbone.model.input_shape
        return dict(
            modality=self.recipe.data.kind,
            task=self.data_task.name,
            class_names=list(self.datasets.class_names),
            multi_label=bool(self.datasets.multi_label),
            backbone=self.backbone.name,
            family=self.backbone.family,
            groups=[(g.name, g.layers[0].name) for g in self.groups if g.name != HEAD and g.layers],
            input_shape=list(shape[1:]) if isinstance(shape, tuple) else None,
            statistics=self.datasets.statistics,
            lora_layers=list(self.backbone.lora_layers) if self.backbone.lora_layers else None,
            **modalities.get(self.recipe.data.kind).model_metadata(self.recipe, self.datasets),
        )

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
            trains = "yes" if g.name in trained else "no"
            if g.name in self._adapted:
                own = self.adapters.get(g.name)
                trains = f"LoRA rank {own.rank}" if own is not None else "LoRA, nothing to adapt"
            rows.append(f"| {g.name} | {trains} | {g.num_trainable_params:,} | {factors[g.name]:.4g} |")
        return (f"**{stage.name}**: {stage.steps} steps ({stage.epochs:.3g} epochs; {stage.why}), lr {stage.lr:g} "
                f"({stage.shape})\n\n{stage.purpose}\n\n" + "\n".join(rows))

    def _write_recipe(self):
        # The recipe as given (kind "auto" included), so that a resume compares like with like.
        given = getattr(self, "_given_recipe", self.recipe)
        evaluation.write_json(os.path.join(self.out_dir, "recipe.json"), given.to_dict())
        if self.recipe.source and os.path.isfile(self.recipe.source):
            shutil.copyfile(self.recipe.source, os.path.join(self.out_dir, "recipe.py"))


# `output.checkpoints`: full checkpoints kept while the run trains, and once it has finished
# (None: all).
CHECKPOINTS_KEPT = {"resume": (2, 0), "last": (2, 1), "all": (None, None)}


def _newest_state(directory):
    """The state of the newest checkpoint that verifies, without loading it; or None."""
    from tfft.callbacks.checkpoints import verify_checkpoint

    for _, path in CheckpointStore(directory).steps():
        try:
            return verify_checkpoint(path)
        except TfftError:
            continue
    return None


def _overrides(values):
    return [f"{key}={value!r}" for key, value in values.items()]


def _describe_state(state):
    return {"empty": "no run", "finished": "a finished run", "other": "files that are not a tfft run",
            "interrupted": "an interrupted run", "started": "a run that stopped before its first checkpoint"}[state]


_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def _seconds(text):
    """`"10min"`, `"600s"` or `"2h"` in seconds."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)\s*", str(text))
    if not match:
        raise RecipeError(f"train.checkpoint_every takes a number of steps or a time such as '10min', '600s', '1h'. "
                          f"Received: train.checkpoint_every={text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _check_train(train):
    if train.on_nan not in ("stop", "rollback"):
        raise RecipeError(f"train.on_nan must be 'stop' or 'rollback'. Received: train.on_nan={train.on_nan!r}")
    if train.restore_best not in (True, False, "auto"):
        raise RecipeError(f"train.restore_best must be True, False or 'auto'. Received: "
                          f"train.restore_best={train.restore_best!r}")
    every = train.checkpoint_every
    if isinstance(every, int) and every < 1:
        raise RecipeError(f"train.checkpoint_every must be at least 1 step. Received: train.checkpoint_every={every}")
    if isinstance(every, str):
        _seconds(every)


def batchnorm_layers_of(group):
    """BatchNorm layers inside a group's layers."""
    return [bn for layer in group.layers for bn in batchnorm_layers(layer)]


def _default_run_dir(recipe):
    name = os.path.splitext(os.path.basename(recipe.source))[0] if recipe.source else "run"
    return os.path.join("runs", name)


def _write_png(path, image):
    import tensorflow as tf

    with open(path, "wb") as file:
        file.write(tf.io.encode_png(image).numpy())

