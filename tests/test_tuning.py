"""Choices on training data alone: `schedule.kind="auto"` and `tfft tune` never read the validation."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from tensorboard.plugins.hparams import api_pb2

from tfft import tuning
from tfft.cli import main
from tfft.data import sources
from tfft.recipe import Recipe
from tfft.testing import (BlobTrainer, array_datasets, gaussian_blobs, hparams_sessions, write_image_folder,
                          write_recipe)

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root / "train", num_classes=3, per_class=10, size=32, seed=0)
    write_image_folder(root / "validation", num_classes=3, per_class=4, size=32, seed=1)
    return root


class Poisoned(BlobTrainer):
    """Blobs whose validation labels are all wrong: scoring on them would show."""

    def build_datasets(self):
        x, y, x_val, y_val = gaussian_blobs(**self.blobs)
        return array_datasets(x, y, x_val, (y_val + 1) % self.blobs["num_classes"], batch_size=16,
                              seed=self.recipe.data.seed, holdout=self.recipe.data.holdout)


AUTO = ["data.batch_size=16", "schedule.kind='auto'", "schedule.min_steps=48", "schedule.lr=0.01",
        "schedule.finetune_lr=0.003"]


@pytest.mark.slow  # two searches of three trials: 54 s beside other work
def test_auto_never_reads_the_validation_split(tmp_path, monkeypatch):
    every = tuning.auto_candidates
    monkeypatch.setattr(tuning, "auto_candidates", lambda recipe, trainer: every(recipe, trainer)[:3])
    outcomes = {}
    for cls in (BlobTrainer, Poisoned):
        winner, results, cost, full = tuning.run_auto(Recipe().with_overrides(AUTO), cls, str(tmp_path / cls.__name__),
                                                      verbose=0)
        outcomes[cls] = (winner.name, [(r.name, round(r.accuracy, 6), round(r.loss, 5)) for r in results])
        assert cost <= tuning.SEARCH_BUDGET * full
    assert outcomes[BlobTrainer] == outcomes[Poisoned]
    # The poison is real: a run that does score on it sees it.
    recipe = Recipe().with_overrides(AUTO + ["schedule.kind='two_phase'"])
    assert Poisoned(recipe, out_dir=str(tmp_path / "reads"), verbose=0, save=False).run()["accuracy"] < 0.1


def test_a_held_out_fold_never_lists_the_validation_folder(folders, monkeypatch):
    listed = []
    real = sources.list_class_folders
    monkeypatch.setattr(sources, "list_class_folders", lambda path, ext: listed.append(str(path)) or real(path, ext))
    split = sources.split_files(str(folders / "train"), None, str(folders / "validation"), 0.2, 0, (".png",),
                                holdout=0.2)
    assert listed == [str(folders / "train")]
    assert len(split.train_paths) == 24 and len(split.val_paths) == 6
    assert not set(split.train_paths) & set(split.val_paths)
    assert sorted(split.val_labels) == [0, 0, 1, 1, 2, 2]
    # Without a validation folder, the fold comes from what the validation split leaves.
    carved = sources.split_files(str(folders / "train"), None, None, 0.2, 0, (".png",))
    fold = sources.split_files(str(folders / "train"), None, None, 0.2, 0, (".png",), holdout=0.25)
    assert set(fold.train_paths + fold.val_paths) == set(carved.train_paths)


@pytest.mark.slow  # a search and its final run: 13 s
def test_auto_run_trains_the_winner_on_all_training_data_and_says_what_it_chose(tmp_path, capsys):
    recipe = Recipe().with_overrides(["data.batch_size=16", "schedule.kind='auto'", "schedule.min_steps=48",
                                      "schedule.lr=0.01", "schedule.finetune_lr=0.003"])
    trainer = BlobTrainer(recipe, out_dir=str(tmp_path / "run"), verbose=1)
    metrics = trainer.run()
    search = metrics["search"]
    assert trainer.datasets.num_train == 128  # all of it, not the fold
    names = [t["name"] for t in search["trials"]]
    assert names[0] == "recommended" and {"gradual_unfreezing", "l2_sp", "train_bn"} <= set(names)
    assert search["chosen"] in names and search["cost"] <= tuning.SEARCH_BUDGET
    assert all(t["steps"] == search["steps"] // len(names) for t in search["trials"])
    chosen = next(t for t in search["trials"] if t["name"] == search["chosen"])
    assert all(getattr(trainer.recipe.schedule, k.split(".")[1], None) == v
               for k, v in chosen["values"].items() if k.startswith("schedule."))
    assert sum(s["steps_run"] for s in metrics["stages"]) == 48  # the full budget, on all training data
    assert sorted(os.listdir(tmp_path / "run" / "search")) == sorted(
        [f"{i:02d}_{n}" for i, n in enumerate(names)] + ["keras_tuner"])
    out = capsys.readouterr().out
    assert f"schedule.kind='auto' chose '{search['chosen']}'" in out and "| trial | values |" in out
    # The hparams dashboard on the run directory: every trial and the final run, each beside
    # its final metrics (a trial's on its held-out fold) and ended.
    sessions = {runs[0][0]: (hparams, metrics, runs) for hparams, metrics, runs in hparams_sessions(tmp_path / "run")}
    trials = {f"search/{i:02d}_{t['name']}/tensorboard": t for i, t in enumerate(search["trials"])}
    assert set(sessions) == set(trials) | {"tensorboard"}
    assert all(runs[0][1] == api_pb2.STATUS_SUCCESS for _, _, runs in sessions.values())
    for run, trial in trials.items():
        hparams, figures, _ = sessions[run]
        assert figures[("", "final/accuracy")] == pytest.approx(trial["accuracy"])
        assert hparams["data.holdout"].number_value == tuning.HOLDOUT
    assert sessions["tensorboard"][1][("", "final/accuracy")] == pytest.approx(metrics["accuracy"])


@pytest.mark.slow  # a search with a sweep, then the run
def test_the_winner_trains_again_at_the_searchs_rate_without_a_new_sweep(tmp_path):
    recipe = Recipe().with_overrides(["data.batch_size=16", "schedule.kind='auto'", "schedule.min_steps=200",
                                      "schedule.lr=0.01", "schedule.finetune_lr='find'"])
    trainer = BlobTrainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    found = metrics["search"]["values"]["schedule.finetune_lr"]
    assert isinstance(found, float) and trainer.recipe.schedule.finetune_lr == found
    assert trainer.range_tests == {}  # the final run swept nothing
    assert metrics["stages"][-1]["lr"] == pytest.approx(found)


def test_plan_of_auto_lists_candidates_and_cost(folders):
    result = CliRunner().invoke(main, ["plan", _write(folders), "--set", "schedule.kind='auto'"])
    assert result.exit_code == 0, result.output
    assert "schedule.kind='auto': 7 candidates, each" in result.output and "no_augment" in result.output
    assert "the validation split is not read" in result.output and "gradual_unfreezing" in result.output


def _write(folders):
    return write_recipe(folders / "recipe.py", f"""
        from tfft.testing import TinyTrainer
        trainer = TinyTrainer
        backbone = dict(input_size=32)
        data = dict(path={str(folders / 'train')!r}, batch_size=8, augment={{}}, validation_split=0.25)
        schedule = dict(kind="two_phase", min_steps=24, lr=0.01, finetune_lr=0.003)
        tune = {{"schedule.finetune_lr": (1e-4, 1e-2), "schedule.unfreeze": [0, 1]}}
    """)


@pytest.mark.slow  # a search and its final run: 10 s
def test_tune_searches_the_tune_section_then_trains_the_best(folders, tmp_path):
    out = tmp_path / "tuned"
    result = CliRunner().invoke(main, ["tune", _write(folders), "--trials", "2", "--steps", "12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 trials of 12 steps on 80% of the training split" in result.output
    assert "--set schedule.finetune_lr=" in result.output and "(chosen)" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics["search"]["values"]
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["schedule"]["finetune_lr"] == best["schedule.finetune_lr"]
    assert 1e-4 <= best["schedule.finetune_lr"] <= 1e-2 and best["schedule.unfreeze"] in (0, 1)
    assert os.path.isfile(out / "model.keras")


@pytest.mark.parametrize("space, message", [
    ({}, "needs a `tune` section"),
    ({"schedule.finetune_lr": [1e-4]}, "two or more values of one type"),
    ({"schedule.finetune_lr": (1e-2, 1e-4)}, "a (low, high) pair"),
    ({"schedule.finetune": [1, 2]}, "Unknown recipe key 'schedule.finetune'"),
])
def test_tune_section_errors(space, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        tuning.parse_space(space)


def test_trials_keep_the_recipes_proportions():
    from tfft.schedules import ScheduleConfig
    from tfft.tuning import trial_lengths

    # The shipped image recipe: a 3-epoch head (12 steps an epoch) in a 144-step run, trials of 24 steps.
    lengths = trial_lengths(ScheduleConfig(head_epochs=3, epochs=12), 12, 144, 24)
    assert lengths == {"schedule.steps": 24, "schedule.epochs": None, "schedule.head_steps": 6,
                       "schedule.head_epochs": None}
    assert trial_lengths(ScheduleConfig(stage_steps=50), 10, 400, 40)["schedule.stage_steps"] == 5
    assert trial_lengths(ScheduleConfig(), 10, 400, 40) == {"schedule.steps": 40, "schedule.epochs": None}


def _trial(name, accuracy, loss=1.0, examples=14):
    return tuning.TrialResult(name, {}, 10, accuracy, loss, 1.0, examples=examples)


@pytest.mark.parametrize("gained, lost, clear", [
    (1, 0, False),  # one example never decides
    (2, 0, True),
    (3, 1, False),  # +2 against sqrt(4) = 2: not more than one standard error
    (4, 1, True),
    (30, 24, False),  # +6 against sqrt(54) = 7.3 on a large fold
    (30, 20, True),  # +10 against sqrt(50) = 7.1
])
def test_a_challenger_must_win_by_more_than_the_folds_noise(gained, lost, clear):
    default = _trial("recommended", 0.5, examples=1000)
    challenger = _trial("other", 0.5 + (gained - lost) / 1000, examples=1000)
    challenger.gained, challenger.lost = gained, lost
    assert tuning.clearly_better(challenger, default) is clear


def test_auto_keeps_the_recommendation_unless_a_challenger_wins_clearly():
    n = 14
    right = set(range(n))
    wrong = {"recommended": {0, 1, 2, 3, 4, 5},       # 8 of 14 right
             "one_more": {0, 1, 2, 3, 4},             # +1 −0: the best score, within the noise
             "lower_loss": {0, 1, 2, 3, 4, 5},        # the same examples, a lower loss
             "worse": {0, 1, 2, 3, 4, 5, 6, 7}}
    results = [_trial(name, len(right - missed) / n, loss=0.5 if name == "lower_loss" else 1.0)
               for name, missed in wrong.items()]
    tuning.compare(results, wrong, "recommended")
    assert [(r.gained, r.lost) for r in results] == [(0, 0), (1, 0), (0, 0), (0, 2)]
    assert tuning._choose(results).name == "one_more"  # what the best score alone picks
    assert tuning.choose_auto(results).name == "recommended"
    note = tuning.choice_note(results, "recommended")
    assert note == ("'one_more' had the best score (held-out accuracy 0.6429, loss 1.0000; 'recommended': 0.5714, "
                    "1.0000) but got 1 held-out examples of 14 right that 'recommended' got wrong and 0 the other way "
                    "round: not clearly better than 'recommended' (the difference must exceed sqrt(1) = 1.00); "
                    "'recommended' stays")
    # Two more examples right, none lost: clear. Of two clear challengers the better score wins.
    wrong["clear"] = {0, 1, 2, 3}
    wrong["clearer"] = {0, 1, 2}
    results += [_trial("clear", 10 / n), _trial("clearer", 11 / n)]
    tuning.compare(results, wrong, "recommended")
    assert tuning.choose_auto(results).name == "clearer" and tuning.choice_note(results, "clearer") == ""
    # The best score not clear, another challenger clear: that one is chosen, and the note says why.
    wrong["lucky"] = {6, 7, 8}  # +6 −3: as many right as 'clearer' at a lower loss, but 3 is not above sqrt(9)
    results.append(_trial("lucky", 11 / n, loss=0.5))
    tuning.compare(results, wrong, "recommended")
    assert tuning.choose_auto(results).name == "clearer"
    assert tuning.choice_note(results, "clearer").endswith("; 'clearer' is (+3 −0) and has the best score of those "
                                                           "that are")
    table = tuning.results_table(results, "clearer")
    assert "| +/− vs recommended |" in table and "| clearer (chosen) |" in table and "| +3 −0 |" in table


class Overlapping(BlobTrainer):
    blobs = dict(BlobTrainer.blobs, spread=4.0)


def test_a_run_records_which_validation_examples_its_model_gets_wrong(tmp_path):
    recipe = Recipe().with_overrides(["data.batch_size=16", "schedule.min_steps=24", "schedule.lr=0.01",
                                      "schedule.finetune_lr=0.003"])
    trainer = Overlapping(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    n = metrics["num_examples"]
    assert 0 < len(trainer.final_wrong) < n and trainer.final_wrong <= set(range(n))
    assert len(trainer.final_wrong) == round((1 - metrics["accuracy"]) * n)
    # The final model's: the best validation's predictions when those weights were restored.
    scores = (np.load(tmp_path / "run" / "checkpoints" / "best" / "scores.npz") if metrics["best"]["restored"]
              else {"labels": trainer._validation.last.labels, "logits": trainer._validation.last.logits})
    assert trainer.final_wrong == set(np.flatnonzero(np.argmax(scores["logits"], -1) != scores["labels"]).tolist())


def test_run_auto_keeps_the_recommendation_when_every_challenger_is_one_example_ahead(tmp_path, monkeypatch):
    calls = []

    def scored(recipe, values, steps, trainer_class, out_dir, holdout=tuning.HOLDOUT, lengths=None):
        missed = frozenset(range(5) if calls else range(6))  # each trial after the first: one more example right
        calls.append(values)
        return _trial("", (14 - len(missed)) / 14), {}, missed

    monkeypatch.setattr(tuning, "score_candidate", scored)
    winner, results, _, _ = tuning.run_auto(Recipe().with_overrides(AUTO), BlobTrainer, str(tmp_path / "run"),
                                            verbose=0)
    assert results[0].name == "recommended" and len(results) > 3
    assert all((r.gained, r.lost) == (1, 0) for r in results[1:])
    assert winner.name == "recommended"
