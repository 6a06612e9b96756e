"""Choosing recipe values on training data alone: `schedule.kind="auto"` and `tfft tune`.

Both score candidates the same way. A candidate is a set of recipe values; it trains on the
training split minus a stratified held-out fold (`data.holdout`, a fifth of each class) for
a short budget and is scored on that fold: held-out accuracy, ties broken by the held-out
loss. The validation split, and a `validation_path` the user gave, are never read. The
winner's values then train for the full budget on the whole training split.

`auto` keeps its recommendation unless a challenger wins clearly (`clearly_better`): every
trial is scored on the same fold, so two trials compare example by example, and a
challenger must get more held-out examples right that the recommendation gets wrong than the
other way round, by more than one standard error of that difference. On a fold of 14 pages
one page is noise; on a fold of 10,000 images a few dozen are not.

- `schedule.kind="auto"` tries a fixed list per recipe (`auto_candidates`): the recommended
  schedule, other built-in schedules and unfreeze depths, the BatchNorm policy flipped,
  stronger augmentation (or label smoothing for text) and L2-SP. Their budgets add up to
  `SEARCH_BUDGET` times the full run's steps, spread evenly.
- `tfft tune RECIPE --trials N` searches the values a recipe lists in its `tune` section
  (`{"schedule.finetune_lr": [1e-5, 1e-4, 1e-3], "train.l2_sp": (0.1, 100.0)}`: a list is a
  choice, a `(low, high)` pair a range, sampled on a log scale when it spans a decade or
  more), with KerasTuner's random search or Bayesian optimisation; each trial gets
  `SEARCH_BUDGET / N` of the run's steps unless told otherwise.

Both drive the trials through KerasTuner (`auto` with its grid search over the candidate
list), and every trial is a run directory of its own under `RUN/search/`, with TensorBoard
logs, its hyperparameters and its final metrics (scored on the held-out fold, the trial's
validation split), so the hparams dashboard opened on `RUN` shows them beside the final
run.
"""

import dataclasses
import logging
import math
import os
import time

from tfft import modalities
from tfft.errors import RecipeError, TfftError

HOLDOUT = 0.2
SEARCH_BUDGET = 1.5
OBJECTIVE = "held_out_score"


@dataclasses.dataclass
class Candidate:
    """A named set of recipe values (`{"schedule.kind": "gradual_unfreezing"}`) and why it
    is worth trying."""

    name: str
    values: dict
    why: str = ""


@dataclasses.dataclass
class TrialResult:
    """How one candidate did on the held-out fold: `accuracy` is the figure named `metric`,
    the task's headline (`Task.headline`: accuracy; entity F1 for tags)."""

    name: str
    values: dict
    steps: int
    accuracy: float
    loss: float
    seconds: float
    metric: str = "accuracy"
    examples: int = 0  # in the held-out fold
    # `auto`: held-out examples this trial gets right and the recommendation wrong, and the
    # other way round (None for `tfft tune`, which has no recommendation).
    gained: int = None
    lost: int = None

    @property
    def score(self):
        """Accuracy, ties broken by the loss (a difference of one example always wins)."""
        return self.accuracy - 1e-6 * min(self.loss, 1e5)


def as_overrides(values):
    """`--set` strings for a dict of dotted keys."""
    return [f"{key}={value!r}" for key, value in values.items()]


def run_budget(trainer):
    """Steps of the full run a (set up) trainer would train."""
    return sum(stage.steps for stage in trainer.stages)


def probe(recipe, trainer_class, values=None):
    """A dry-run trainer on the held-out fold's data (the validation split is not read), the
    steps the full run would take on the whole training split, and its steps per epoch."""
    from tfft.schedules import build_stages

    overrides = dict(values or {}, **{"data.holdout": HOLDOUT})
    trainer = trainer_class(recipe.with_overrides(as_overrides(overrides)), verbose=0, dry_run=True)
    trainer.setup()
    data = trainer.datasets
    # The fold and the rest are the whole training split again.
    per_epoch = math.ceil((data.num_train + data.num_validation) / data.batch_size)
    stages = build_stages(trainer._resolved_schedule(), trainer.group_names, per_epoch)
    return trainer, sum(stage.steps for stage in stages), per_epoch


def trial_lengths(schedule, per_epoch, full, steps):
    """Overrides that fit the recipe's schedule into a trial of `steps` steps, keeping its
    proportions: a head of 3 epochs out of a 400-step run becomes 3/400 of the trial
    (a trial's `schedule.steps` alone would leave the head longer than the whole trial)."""
    lengths = {"schedule.steps": steps, "schedule.epochs": None}
    for part in ("head", "stage"):
        given = getattr(schedule, f"{part}_steps") or (getattr(schedule, f"{part}_epochs") or 0) * per_epoch
        if given:
            lengths[f"schedule.{part}_steps"] = max(1, round(given * steps / full))
            lengths[f"schedule.{part}_epochs"] = None
    return lengths


def score_candidate(recipe, values, steps, trainer_class, out_dir, holdout=HOLDOUT, lengths=None):
    """Train `recipe` with `values` for `steps` on the training split minus its held-out
    fold; return a `TrialResult` scored on that fold, the rates the learning-rate finder
    chose (`{"schedule.finetune_lr": 3e-4}`) and the indices of the fold's examples the
    trial gets wrong."""
    lengths = dict(lengths or {"schedule.steps": steps})
    trial = recipe.with_overrides(as_overrides(dict(lengths, **values, **{"data.holdout": holdout})))
    trainer = trainer_class(trial, out_dir=out_dir, overwrite=True, verbose=0, save=False)
    start = time.perf_counter()
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # every trial builds new functions: retracing notes are expected
    try:
        metrics = trainer.run()
    finally:
        tf_logger.setLevel(level)
    loss = metrics["stages"][-1].get("val_loss", float("inf"))
    # A rate of "find" costs a sweep at its stage's start: counted in the trial's steps.
    swept = sum(len(test.rates) for test in trainer.range_tests.values())
    found = {}
    for stage in trainer.planned_stages:
        if stage.lr == "find" and stage.name in trainer.range_tests:
            key = "schedule.lr" if stage.train == ("head",) else "schedule.finetune_lr"
            found[key] = trainer.range_tests[stage.name].suggestion
    headline = trainer.data_task.headline
    result = TrialResult("", dict(values), steps + swept, float(metrics[headline]), float(loss),
                         time.perf_counter() - start, metric=headline, examples=int(metrics["num_examples"]))
    return result, found, trainer.final_wrong


def auto_candidates(recipe, trainer):
    """The candidates `schedule.kind="auto"` tries for this recipe and backbone.

    The first is tfft's recommendation (`recommended_schedule`) with the
    recipe's other values; the others change one thing each, so the table says what each
    choice is worth.
    """
    kind = recipe.data.kind
    groups = trainer.group_names
    base = recommended_schedule()
    unfreeze = recipe.schedule.unfreeze
    pairs = bool(modalities.get(kind).pairs_up_to) and trainer.pairs_eligible()
    on = recipe.schedule.pairs is True or (recipe.schedule.pairs == "auto" and trainer.pairs_by_default() is not None)
    candidates = [Candidate("recommended", dict(base), "the recommended schedule")]
    if pairs:  # second: with pairs on, its sweep finds the finetune_lr the staged candidates reuse
        candidates.append(Candidate("no_pairs" if on else "pairs", dict(base, **{"schedule.pairs": not on}),
                                    "the pairs stage (tfft.pairs) the other way round"))
    candidates.append(Candidate("gradual_unfreezing", dict(base, **{"schedule.kind": "gradual_unfreezing"}),
                                "one more group from the top per stage (ULMFiT)"))
    if unfreeze != 0 and len(groups) > 1 and not on:  # with pairs, no stage unfreezes top groups
        candidates.append(Candidate("all_groups", dict(base, **{"schedule.unfreeze": 0}),
                                    f"every group trains in the second phase, not the top {unfreeze}"))
    if trainer.has_batchnorm:
        trains = not trainer.backbone.pretrained if recipe.schedule.train_bn == "auto" else bool(recipe.schedule.train_bn)
        candidates.append(Candidate("frozen_bn" if trains else "train_bn",
                                    dict(base, **{"schedule.train_bn": not trains}),
                                    "the BatchNorm policy the other way round"))
    candidates += [Candidate(name, overrides, why) for name, overrides, why in modalities.get(kind).tune_candidates(base)]
    candidates.append(Candidate("l2_sp", dict(base, **{"train.l2_sp": 10.0}),
                                "L2-SP: every step pulls the backbone back toward its pretrained weights"))
    return candidates


def recommended_schedule():
    """The schedule tfft recommends, for every modality alike (docs/schedules.md): two
    phases, the head first, then the head and the top groups at a rate the learning-rate
    finder picks. On the few-shot benchmarks it beat the staged alternatives."""
    return {"schedule.kind": "two_phase"}


def _choose(results):
    return max(results, key=lambda r: r.score)


def compare(results, wrong, default):
    """Set each result's `gained` and `lost` against the trial named `default`, from `wrong`:
    `{trial name: indices of the held-out examples it gets wrong}` (one fold for all)."""
    missed = wrong[default]
    for result in results:
        result.gained = len(missed - wrong[result.name])
        result.lost = len(wrong[result.name] - missed)


def clearly_better(result, default):
    """Whether `result` beats the `default` trial by more than the fold's noise: a higher
    score, and more held-out examples gained than lost against it by more than one standard
    error of that difference, `sqrt(gained + lost)` (a sign test at z = 1, the
    one-standard-error rule on paired outcomes). One example of difference never decides:
    +1 −0 is not clear, +2 −0 is, +3 −1 is not, +4 −1 is."""
    return result.score > default.score and result.gained - result.lost > math.sqrt(result.gained + result.lost)


def choose_auto(results, default="recommended"):
    """`auto`'s winner: the best-scoring trial among those `clearly_better` than the
    `default` trial (after `compare`), or the default when none is."""
    base = next(r for r in results if r.name == default)
    clear = [r for r in results if r is not base and clearly_better(r, base)]
    return _choose(clear) if clear else base


def choice_note(results, winner, default="recommended"):
    """Why `winner` was chosen, when the best score alone would have chosen another: one
    sentence, or "" (after `compare`)."""
    best = _choose(results)
    if best.name == winner or best.gained is None:
        return ""
    chosen = next(r for r in results if r.name == winner)
    base = next(r for r in results if r.name == default)
    outcome = (f"'{default}' stays" if winner == default else
               f"'{winner}' is (+{chosen.gained} −{chosen.lost}) and has the best score of those that are")
    return (f"'{best.name}' had the best score (held-out {best.metric} {best.accuracy:.4f}, loss {best.loss:.4f}; "
            f"'{default}': {base.accuracy:.4f}, {base.loss:.4f}) but got {best.gained} held-out examples of "
            f"{best.examples} right that '{default}' got wrong and {best.lost} the other way round: not clearly "
            f"better than '{default}' (the difference must exceed sqrt({best.gained + best.lost}) = "
            f"{math.sqrt(best.gained + best.lost):.2f}); {outcome}")


class _Search:
    """Runs candidates through a KerasTuner oracle and keeps every result."""

    def __init__(self, recipe, trainer_class, out_dir, steps, lengths=None):
        self.recipe = recipe
        self.trainer_class = trainer_class
        self.out_dir = out_dir
        self.steps = steps
        self.lengths = lengths
        self.results = []
        self.found = {}  # the first rate the finder chose for each key, as recipe values
        self.wrong = {}  # trial name -> indices of the held-out examples it got wrong

    def tuner(self, oracle, values_of):
        import keras_tuner

        search = self

        class Tuner(keras_tuner.Tuner):
            def run_trial(self, trial, *args, **kwargs):
                name, values = values_of(trial.hyperparameters)
                out = os.path.join(search.out_dir, "search", f"{len(search.results):02d}_{name}")
                try:
                    result, found, wrong = score_candidate(search.recipe, values, search.steps,
                                                           search.trainer_class, out, lengths=search.lengths)
                    for key, rate in found.items():  # the first rate found for a key serves later trials
                        search.found.setdefault(key, rate)
                except TfftError as error:
                    raise keras_tuner.errors.FatalError(f"{type(error).__name__}: {error}") from error
                result.name = name
                search.results.append(result)
                search.wrong[name] = wrong
                return {OBJECTIVE: result.score}

            def save_model(self, *args, **kwargs):
                pass  # each trial's run directory is its record

        return Tuner(oracle=oracle, directory=os.path.join(self.out_dir, "search"), project_name="keras_tuner",
                     overwrite=True)

    def run(self, tuner):
        import keras_tuner

        try:
            tuner.search(verbose=0)
        except keras_tuner.errors.FatalError as error:
            message = str(error)
            raise TfftError(message.split(": ", 1)[1] if ": " in message else message) from None
        if not self.results:
            raise TfftError("No trial of the search finished; see the run directories under "
                            f"{os.path.join(self.out_dir, 'search')}.")
        return self.results


def run_auto(recipe, trainer_class, out_dir, verbose=1, before=None):
    """`schedule.kind="auto"`: score `auto_candidates` on the held-out fold, return
    `(winner, results, search_steps, run_steps)`; the winner is a `Candidate`: the
    recommendation unless another is clearly better on the fold (`choose_auto`).

    `before` runs once the recipe has passed a dry run, before the first trial writes.
    """
    import keras_tuner

    probed, full, per_epoch = probe(recipe, trainer_class, recommended_schedule())
    if before is not None:
        before()
    candidates = auto_candidates(recipe, probed)
    steps = trial_steps(recipe, full, len(candidates))
    if verbose:
        print(f"schedule.kind='auto': {len(candidates)} candidates, {steps} steps each on "
              f"{1 - HOLDOUT:.0%} of the training split, scored on the other {HOLDOUT:.0%} "
              f"(search: about {SEARCH_BUDGET:g}x the run's {full} steps)", flush=True)
    by_name = {c.name: c for c in candidates}
    hp = keras_tuner.HyperParameters()
    hp.Choice("candidate", [c.name for c in candidates])
    oracle = keras_tuner.oracles.GridSearchOracle(objective=keras_tuner.Objective(OBJECTIVE, "max"),
                                                  max_trials=len(candidates), hyperparameters=hp)
    search = _Search(recipe, trainer_class, out_dir, steps, trial_lengths(recipe.schedule, per_epoch, full, steps))

    def values_of(hyperparameters):
        candidate = by_name[hyperparameters.get("candidate")]
        if verbose:
            print(f"  trying '{candidate.name}': {candidate.why}", flush=True)
        values = dict(candidate.values)
        if search.results:
            # A rate the finder found in an earlier trial serves the later ones: one sweep, not one each.
            values.update(search.found)
        return candidate.name, values

    results = search.run(search.tuner(oracle, values_of))
    compare(results, search.wrong, "recommended")
    winner = by_name[choose_auto(results).name]
    # The winner trains again on all the training data at the rates its trial had: the
    # search's sweep, not a new one per stage (a staged winner would sweep at every stage).
    winner = dataclasses.replace(winner, values=dict(winner.values, **search.found))
    return winner, results, sum(r.steps for r in results), full


def trial_steps(recipe, full, count):
    """Steps of each of `count` trials so that the search, with the one learning-rate sweep
    the trials share when a rate is `"find"`, costs about `SEARCH_BUDGET` runs."""
    sweeps = sum(1 for rate in (recipe.schedule.lr, recipe.schedule.finetune_lr) if rate == "find")
    budget = SEARCH_BUDGET * full - 100 * sweeps
    return max(1, int(budget / count))


def parse_space(tune):
    """Check a recipe's `tune` section: `{dotted.key: [choices] or (low, high)}`."""
    from tfft.recipe import Recipe

    if not isinstance(tune, dict) or not tune:
        raise RecipeError("tfft tune needs a `tune` section in the recipe: a dict of dotted keys to a list of "
                          "values or a (low, high) range, e.g. tune = {'schedule.finetune_lr': [1e-5, 1e-4, 1e-3]}")
    for key, space in tune.items():
        Recipe().with_overrides([f"{key}={(space[0] if isinstance(space, (list, tuple)) and space else space)!r}"])
        if isinstance(space, list):
            if len(space) < 2 or any(v is None for v in space) or len({type(v) for v in space}) > 1:
                raise RecipeError(f"tune[{key!r}] must list two or more values of one type (no None). "
                                  f"Received: {space!r}")
        elif isinstance(space, tuple):
            if len(space) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in space) \
                    or not space[0] < space[1]:
                raise RecipeError(f"tune[{key!r}] as a range is a (low, high) pair of numbers. Received: {space!r}")
        else:
            raise RecipeError(f"tune[{key!r}] must be a list of values or a (low, high) range. Received: {space!r}")
    return tune


def run_tune(recipe, trainer_class, out_dir, trials, oracle="random", steps=None, seed=0, verbose=1):
    """`tfft tune`: search the recipe's `tune` section; return `(best, results, steps)`,
    `best` the winning values as a dict."""
    import keras_tuner

    space = parse_space(recipe.tune)
    if trials < 1:
        raise RecipeError(f"--trials must be at least 1. Received: --trials {trials}")
    _, full, per_epoch = probe(recipe, trainer_class)
    if steps is None:
        steps = max(1, int(SEARCH_BUDGET * full / trials))
    hp = keras_tuner.HyperParameters()
    for key, values in space.items():
        if isinstance(values, list):
            hp.Choice(key, values)
        elif isinstance(values[0], int) and isinstance(values[1], int):
            hp.Int(key, values[0], values[1])
        else:
            low, high = float(values[0]), float(values[1])
            hp.Float(key, low, high, sampling="log" if low > 0 and high / low >= 10 else "linear")
    objective = keras_tuner.Objective(OBJECTIVE, "max")
    if oracle == "random":
        engine = keras_tuner.oracles.RandomSearchOracle(objective=objective, max_trials=trials, seed=seed,
                                                        hyperparameters=hp)
    elif oracle == "bayesian":
        engine = keras_tuner.oracles.BayesianOptimizationOracle(objective=objective, max_trials=trials, seed=seed,
                                                                hyperparameters=hp)
    else:
        raise RecipeError(f"--oracle must be 'random' or 'bayesian'. Received: --oracle {oracle}")
    search = _Search(recipe, trainer_class, out_dir, steps, trial_lengths(recipe.schedule, per_epoch, full, steps))

    def values_of(hyperparameters):
        values = {key: hyperparameters.get(key) for key in space}
        if verbose:
            print(f"  trial {len(search.results) + 1}/{trials}: {_describe(values)}", flush=True)
        return f"trial{len(search.results) + 1}", values

    results = search.run(search.tuner(engine, values_of))
    return _choose(results).values, results, steps


def _describe(values):
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in values.items())


def results_table(results, winner):
    """The trials as a markdown table, best first."""
    metric = results[0].metric if results else "accuracy"
    paired = any(result.gained is not None for result in results)
    rows = [f"| trial | values | steps | held-out {metric} | held-out loss |" + (" +/− vs recommended |" if paired else "")
            + " seconds |", "|---|---|---|---|---|---|" + ("---|" if paired else "")]
    for result in sorted(results, key=lambda r: -r.score):
        mark = " (chosen)" if result.name == winner else ""
        versus = f" +{result.gained} −{result.lost} |" if paired else ""
        rows.append(f"| {result.name}{mark} | {_describe(result.values)} | {result.steps} | {result.accuracy:.4f} | "
                    f"{result.loss:.4f} |{versus} {result.seconds:.0f} |")
    return "\n".join(rows)
