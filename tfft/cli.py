"""The `tfft` command: run a recipe, or print its plan without training.

```
tfft run recipes/tumor_resnet.py --set data.path=~/mri --set schedule.epochs=12 --out runs/mri
tfft plan recipes/tumor_resnet.py
```

A user mistake ends in one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

import dataclasses
import functools
import math
import os
import sys

import click


def _user_errors(command):
    """Turn a `TfftError` into one line on stderr and exit code 2, and a run stopped on a
    signal or a non-finite loss into its line and its exit code (143, 130, 3)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from tfft.errors import TfftError
        from tfft.trainer import RunStopped

        try:
            return command(*args, **kwargs)
        except RunStopped as stopped:
            click.echo(str(stopped), err=True)
            sys.exit(stopped.exit_code)
        except TfftError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)

    return wrapper


_set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set schedule.epochs=12 (repeatable).",
)
_demo_option = click.option("--demo", is_flag=True, help="Apply the recipe's `demo` values: a small, fast run.")


@click.group()
@click.version_option(package_name="tfft")
def main():
    """tfft: staged, layer-wise fine-tuning of pretrained backbones."""


def _is_application(recipe):
    from tfft import modalities
    from tfft.backbones.applications import find_application

    return modalities.get(recipe.data.kind).takes_applications and find_application(recipe.backbone.name) is not None


def _load(recipe_path, overrides, demo):
    from tfft.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides=overrides, demo=demo)
    if demo and _is_application(recipe) and recipe.backbone.weights in ("imagenet", "pretrained"):
        from tfft.backbones import imagenet_weights_available

        if not imagenet_weights_available(recipe.backbone.name):
            click.echo(
                f"WARNING: ImageNet weights for {recipe.backbone.name} are not available offline; "
                "the demo continues from RANDOM INITIALISATION (a normal run stops with an error instead).",
                err=True,
            )
            recipe.backbone.weights = None
    return recipe


@main.command()
@click.argument("recipe_path", metavar="RECIPE")
@_set_option
@click.option("--out", "out_dir", default=None, help="Run directory (default: output.dir, else runs/<recipe name>).")
@click.option("--overwrite", is_flag=True, help="Replace a run directory that already holds files, once the new "
              "run has finished.")
@click.option("--resume", "resume", is_flag=True, help="Insist on resuming an interrupted run of this recipe in the "
              "run directory (without it, one is resumed when found).")
@_demo_option
@_user_errors
def run(recipe_path, overrides, out_dir, overwrite, resume, demo):
    """Fine-tune as RECIPE says; write logs, checkpoints, model.keras and metrics.json.

    An interrupted run of the same recipe in the run directory is resumed from its newest
    checkpoint.
    """
    if resume and overwrite:
        from tfft.errors import TfftError

        raise TfftError("--resume and --overwrite contradict each other: give one.")
    recipe = _load(recipe_path, overrides, demo)
    from tfft.trainer import Trainer

    trainer = (recipe.trainer or Trainer)(recipe, out_dir=out_dir, overwrite=overwrite,
                                          resume=True if resume else "auto")
    metrics = trainer.run()
    _report(metrics, trainer)


@main.command()
@click.argument("run_dir", metavar="DIR")
@_user_errors
def resume(run_dir):
    """Resume the interrupted run in DIR, from its recipe and newest checkpoint alone."""
    from tfft.recipe import recipe_from_run
    from tfft.trainer import Trainer

    recipe = recipe_from_run(run_dir)
    trainer = (recipe.trainer or Trainer)(recipe, out_dir=run_dir, resume=True)
    metrics = trainer.run()
    _report(metrics, trainer)


@main.command()
@click.argument("recipe_path", metavar="RECIPE")
@_set_option
@_demo_option
@_user_errors
def plan(recipe_path, overrides, demo):
    """Print each stage of RECIPE: groups, whether they train, parameters, learning rates."""
    recipe = _load(recipe_path, overrides, demo)
    from tfft.trainer import Trainer

    # A dry run: the architecture without its weights, the data listed but not decoded.
    trainer = (recipe.trainer or Trainer)(recipe, verbose=0, dry_run=True)
    plans = trainer.plan()
    click.echo(
        f"{trainer.backbone.name}: {len(trainer.group_names)} layer groups, {trainer.num_classes} classes, "
        f"{trainer.datasets.num_train} training examples, {trainer.steps_per_epoch} steps per epoch, "
        f"{sum(p.steps for p in plans)} steps in all"
    )
    if trainer.backbone.note:
        click.echo(trainer.backbone.note)
    click.echo(describe_optimizer(trainer))
    if recipe.schedule.kind == "auto":
        click.echo(describe_search(trainer))
    for stage_plan in plans:
        click.echo(format_stage(stage_plan, len(plans)))


@main.command("lr-find")
@click.argument("recipe_path", metavar="RECIPE")
@_set_option
@click.option("--stage", "stage_name", default=None,
              help="The stage to sweep (default: the first whose rate is 'find', else the first).")
@click.option("--steps", default=100, show_default=True, help="Steps of the sweep.")
@click.option("--out", "out_dir", default=None, help="Directory for lr_find.png, lr_find.json and TensorBoard logs "
              "(default: runs/<recipe name>-lr-find).")
@click.option("--overwrite", is_flag=True, help="Replace a directory that already holds files.")
@_demo_option
@_user_errors
def lr_find(recipe_path, overrides, stage_name, steps, out_dir, overwrite, demo):
    """Learning-rate range test of one stage of RECIPE: the suggested rate and its curve.

    The stages before it train first, as the recipe says; the sweep itself leaves the
    weights as they were.
    """
    recipe = _load(recipe_path, overrides, demo)
    from tfft.trainer import Trainer, _default_run_dir

    out_dir = out_dir or _default_run_dir(recipe) + "-lr-find"
    trainer = (recipe.trainer or Trainer)(recipe, out_dir=out_dir, overwrite=overwrite, verbose=0)
    trainer.join_cluster = False  # a sweep in this process alone, also on a cluster's host
    stage, test = trainer.range_test(stage_name, steps=steps)
    key = "schedule.lr" if stage.train == ("head",) else "schedule.finetune_lr"
    trained = sorted(stage.trained_groups(trainer.group_names), key=[g.name for g in trainer.groups].index)
    click.echo(f"stage '{stage.name}' (trains {', '.join(trained)}): {len(test.rates)} sweep steps from "
               f"{test.rates[0]:.2g} to {test.rates[-1]:.2g}; stopped at {test.stopped}")
    click.echo(f"suggested learning rate: {test.suggestion:.3g}, by the rule {test.rule}")
    click.echo(f"wrote {os.path.join(out_dir, 'lr_find.png')} and {os.path.join(out_dir, 'lr_find.json')}; "
               f"tensorboard --logdir {os.path.join(out_dir, 'tensorboard')}")
    click.echo(f"use it: --set {key}={test.suggestion:.3g}")


@main.command()
@click.argument("recipe_path", metavar="RECIPE")
@_set_option
@click.option("--trials", default=8, show_default=True, help="How many value sets to try.")
@click.option("--oracle", type=click.Choice(["random", "bayesian"]), default="random", show_default=True,
              help="KerasTuner's random search or Bayesian optimisation.")
@click.option("--steps", type=int, default=None,
              help="Steps of each trial (default: 1.5x the run's steps, shared among the trials).")
@click.option("--out", "out_dir", default=None, help="Run directory (default: runs/<recipe name>-tune).")
@click.option("--overwrite", is_flag=True, help="Replace a directory that already holds files.")
@_demo_option
@_user_errors
def tune(recipe_path, overrides, trials, oracle, steps, out_dir, overwrite, demo):
    """Search the values RECIPE lists in its `tune` section, on held-out training data; then
    train the winner on the whole training split."""
    recipe = _load(recipe_path, overrides, demo)
    from tfft import tuning
    from tfft.trainer import Trainer, _default_run_dir

    tuning.parse_space(recipe.tune)
    out_dir = out_dir or _default_run_dir(recipe) + "-tune"
    cls = recipe.trainer or Trainer
    final = cls(recipe, out_dir=out_dir, overwrite=overwrite, resume=False)
    final.claim()  # the lock and the run directory's checks, before the first trial writes
    try:
        best, results, steps = tuning.run_tune(recipe, cls, final.out_dir, trials, oracle=oracle, steps=steps,
                                               seed=recipe.runtime.seed)
        winner = max(results, key=lambda r: r.score).name
        click.echo(f"{len(results)} trials of {steps} steps on {1 - tuning.HOLDOUT:.0%} of the training split, "
                   f"scored on the other {tuning.HOLDOUT:.0%}:\n{tuning.results_table(results, winner)}")
        click.echo(f"best: {' '.join('--set ' + o for o in tuning.as_overrides(best))}; training it on the whole "
                   "training split")
        final.recipe = recipe.with_overrides(tuning.as_overrides(best))
        final.search = dict(chosen=winner, values=best, steps=steps * len(results), trials=[
            dataclasses.asdict(r) for r in results], table=tuning.results_table(results, winner), why="tfft tune")
        metrics = final.run()
    finally:
        final.release()
    _report(metrics, final)


def _report(metrics, trainer):
    logdir = os.path.join(trainer.out_dir, "tensorboard")
    click.echo(trainer.data_task.summary(metrics))
    if not trainer.is_chief:
        click.echo(f"{trainer.task}: done; the chief wrote the run directory")
        return
    click.echo(f"wrote {os.path.join(trainer.out_dir, 'metrics.json')}"
               + (f" and {os.path.join(trainer.out_dir, 'model.keras')}" if trainer.save else ""))
    click.echo(f"tensorboard --logdir {logdir}")


@main.command()
@click.argument("run_dir", metavar="RUN")
@click.option("--data", "data", required=True, metavar="PATH",
              help="Labelled data of the run's modality: a class-per-folder tree, a CSV manifest (text: also JSON "
                   "lines), or a TFDS split as tfds:NAME:SPLIT.")
@click.option("--name", default=None, help="Folder under RUN/evaluations/ (default: from PATH).")
@_user_errors
def evaluate(run_dir, data, name):
    """Score RUN's model on labelled data: metrics, confusion matrix, calibration and drift
    against the run's validation, in RUN/evaluations/NAME/ and TensorBoard."""
    from tfft.evaluate_run import evaluate_run, evaluation_lines, evaluation_name

    report = evaluate_run(run_dir, data, name=name)
    for line in evaluation_lines(report):
        click.echo(line)
    click.echo(f"wrote {os.path.join(run_dir, 'evaluations', name or evaluation_name(data))}")


@main.command()
@click.argument("run_dir", metavar="RUN")
@click.option("--format", "export_format", type=click.Choice(["saved_model", "tflite"]), default="saved_model",
              show_default=True, help="A SavedModel taking raw inputs, or TFLite.")
@click.option("--out", "out", default=None, metavar="PATH",
              help="Where to write (default RUN/export/saved_model or RUN/export/model.tflite).")
@_user_errors
def export(run_dir, export_format, out):
    """Export RUN's model with its preprocessing: a SavedModel whose serving_default takes
    raw inputs and returns probabilities, top_classes and top_names (labels.txt beside it),
    or a TFLite model."""
    from tfft.export import export_run

    path = export_run(run_dir, format=export_format, out=out)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("source", metavar="RUN|EXPORT")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--top-k", "k", default=3, show_default=True, type=click.IntRange(1), help="Classes listed per input.")
@click.option("--format", "output_format", type=click.Choice(["table", "csv", "jsonl"]), default="table",
              show_default=True)
@_user_errors
def predict(source, inputs, k, output_format):
    """Predict the classes of INPUT files and folders with a run's model or an export (for a
    token-classification run: the entities in each text)."""
    from tfft import tasks
    from tfft.predict import predict as run_predict

    bars = []

    def progress(done, total):  # a bar on a terminal, for inputs of more than one batch
        if not bars:
            bars.append(click.progressbar(length=total, label="predicting", file=sys.stderr))
        bars[0].update(done - bars[0].pos)

    rows = run_predict(source, inputs, k=k, progress=progress if sys.stderr.isatty() else None)
    if bars:
        bars[0].render_finish()
    for line in tasks.of_rows(rows).row_lines(rows, output_format, k):
        click.echo(line)


@main.command("check-data")
@click.argument("recipe_path", metavar="RECIPE")
@_set_option
@_demo_option
@_user_errors
def check_data(recipe_path, overrides, demo):
    """Check RECIPE's data without training: examples per class and split, unreadable
    files, duplicates across training and validation; exit code 2 when anything is wrong."""
    recipe = _load(recipe_path, overrides, demo)
    from tfft.data.check import check_recipe_data

    lines, problems = check_recipe_data(recipe)
    for line in lines:
        click.echo(line)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        click.echo(f"{len(problems)} problems", err=True)
        sys.exit(2)
    click.echo("no problems found")


def describe_search(trainer):
    """What `schedule.kind="auto"` will try, on what data, at what cost."""
    from tfft import tuning

    candidates = tuning.auto_candidates(trainer.recipe, trainer)
    full = tuning.run_budget(trainer)  # the plan's trainer holds the whole training split
    steps = tuning.trial_steps(trainer.recipe, full, len(candidates))
    lines = [f"schedule.kind='auto': {len(candidates)} candidates, each {steps} steps on {1 - tuning.HOLDOUT:.0%} of the "
             f"training split, scored on the other {tuning.HOLDOUT:.0%} (the validation split is not read); the search "
             f"costs about {tuning.SEARCH_BUDGET:g}x the {full} steps of the final run (a learning-rate sweep the "
             "trials share included), which trains the winner on the whole training split:"]
    lines += [f"  {c.name}: {tuning._describe(c.values)} ({c.why})" for c in candidates]
    lines.append(f"The stages below are those of '{candidates[0].name}'.")
    return "\n".join(lines)


def format_stage(stage_plan, count):
    """Format one `StagePlan` as a small table, with how long it runs and why."""
    stage = stage_plan.stage
    start, end = stage_plan.bounds
    width = max(14, *(len(row[0]) + 1 for row in stage_plan.groups))
    lr = "found by the learning-rate finder at the stage's start" if stage.lr == "find" else f"{stage.lr:g}"
    lines = [
        "",
        f"stage {stage_plan.index + 1}/{count} '{stage.name}': steps {start + 1}-{end} ({stage_plan.steps} steps, "
        f"{stage_plan.epochs:.3g} epochs), lr {lr} {stage.shape}"
        + (f" warmup {stage.warmup:g}" if stage.warmup else "")
        + (", BatchNorm trains" if stage_plan.batchnorm_trains else ""),
        f"  length: {stage.why}",
    ]
    if stage.purpose:
        lines.append(f"  trains: {stage.purpose}")
    if stage_plan.features == "cached":
        lines.append("  backbone frozen: its outputs are computed once and the head trains on them "
                     "(runtime.cache_features)")
    elif stage_plan.features:
        lines.append(f"  backbone frozen: its outputs are computed at every step, because {stage_plan.features}")
    lines += describe_adapters(stage_plan)
    lines.append(f"  {'group':<{width}} {'trains':<7} {'trainable params':>17} {'lr':>10}")
    for name, trains, params, rate in stage_plan.groups:
        shown = "-" if not trains else ("find" if rate is None else f"{rate:.3g}")
        how = ("lora" if name in stage_plan.adapted else "yes") if trains else "no"
        lines.append(f"  {name:<{width}} {how:<7} {params:>17,} {shown:>10}")
    lines.append(f"  {'total':<{width}} {'':<7} {stage_plan.trainable_params:>17,}")
    return "\n".join(lines)


def describe_adapters(stage_plan):
    """The lines of `tfft plan` saying which groups of a stage train through LoRA adapters."""
    if not stage_plan.adapted:
        return []
    lora = stage_plan.stage.lora
    lines = [f"  LoRA (rank {lora.rank}, alpha {lora.rank * lora.scale:g}): only the adapters train in "
             f"{list(stage_plan.adapted)}; their other weights stay as pretrained"]
    for name in stage_plan.adapted:
        own = stage_plan.adapters.get(name)
        if own is None:
            lines.append(f"    {name}: no layer LoRA adapts, so nothing in it trains")
            continue
        names = own.layer_names
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(f"    {name}: {len(own.layers)} adapted layers ({shown}), {own.num_params:,} adapter parameters")
    return lines


def describe_optimizer(trainer):
    """The plan's line on the optimizer: what it is built over and the memory of its state."""
    from tfft.adapters import optimizer_state

    count, size = optimizer_state(trainer.optimizer)
    variables = trainer.group_optimizer._trainable_variables
    params = sum(math.prod(v.shape) for v in variables)
    return (f"optimizer: {type(trainer.group_optimizer).__name__} over {len(variables)} variables "
            f"({params:,} parameters) that some stage trains; its state: {count} variables, {size / 1e6:.2f} MB")


def run_cli():
    """The `tfft` console command: `main` with TensorFlow's C++ log lines filtered out."""
    from tfft.native_logs import filtered_stderr

    with filtered_stderr():
        try:
            main()
        except SystemExit as exit:
            code = exit.code
        else:
            code = 0
    sys.exit(code)


if __name__ == "__main__":
    run_cli()
