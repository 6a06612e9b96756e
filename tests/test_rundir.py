"""One run per directory, resumed only when it is the same recipe, replaced only once a new one finished."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfft import rundir
from tfft.errors import TfftError
from tfft.recipe import Recipe
from tfft.testing import BlobTrainer

pytestmark = pytest.mark.filterwarnings("ignore")

BASE = ["data.batch_size=16", "schedule.kind='custom'", "output.log_every=1",
        "schedule.stages=[{'name': 'a', 'steps': 6, 'train': 'head', 'lr': 0.01}, "
        "{'name': 'b', 'steps': 6, 'train': 'all', 'lr': 0.003}]"]


def _trainer(out, *overrides, **kwargs):
    return BlobTrainer(Recipe().with_overrides(BASE + list(overrides)), out_dir=str(out), verbose=0, **kwargs)


class Crash(BlobTrainer):
    """Dies with an exception in its second stage, as a bad file or a bug would."""

    def on_stage_begin(self, stage, index):
        if index == 1:
            raise RuntimeError("crash in stage 2")


def test_a_second_run_into_a_directory_in_use_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = rundir.sibling(tmp_path / "run", "lock")
        with open(lock, "w") as file:
            json.dump({"pid": holder.pid, "host": os.uname().nodename}, file)
        with pytest.raises(TfftError, match=f"in use by process {holder.pid}"):
            _trainer(tmp_path / "run").run()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone now: its lock is stale and taken over.
    metrics = _trainer(tmp_path / "run").run()
    assert metrics["accuracy"] > 0 and not os.path.exists(lock)


def test_a_finished_run_is_never_touched_without_overwrite(tmp_path):
    _trainer(tmp_path / "run").run()
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    with pytest.raises(TfftError, match="holds a finished run: pass --out to another directory or --overwrite"):
        _trainer(tmp_path / "run").run()
    with pytest.raises(TfftError, match="Nothing to resume in .*: it holds a finished run"):
        _trainer(tmp_path / "run", resume=True).run()
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before


def test_overwrite_keeps_the_old_run_until_the_new_one_has_finished(tmp_path):
    _trainer(tmp_path / "run", "runtime.seed=1").run()
    old = (tmp_path / "run" / "metrics.json").read_bytes()
    with pytest.raises(RuntimeError, match="crash in stage 2"):
        Crash(Recipe().with_overrides(BASE), out_dir=str(tmp_path / "run"), overwrite=True, verbose=0).run()
    assert (tmp_path / "run" / "metrics.json").read_bytes() == old  # the crash lost nothing
    assert os.path.isdir(rundir.sibling(tmp_path / "run", "next"))
    metrics = _trainer(tmp_path / "run", overwrite=True).run()
    assert (tmp_path / "run" / "metrics.json").read_bytes() != old
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    assert not os.path.exists(rundir.sibling(tmp_path / "run", "next"))
    assert not os.path.exists(rundir.sibling(tmp_path / "run", "old"))


def test_an_interrupted_run_resumes_only_with_the_same_recipe(tmp_path):
    with pytest.raises(RuntimeError):
        Crash(Recipe().with_overrides(BASE), out_dir=str(tmp_path / "run"), verbose=0).run()
    assert rundir.state_of(tmp_path / "run") == "interrupted"
    with pytest.raises(TfftError, match="interrupted run of another recipe: data.batch_size, train.label_smoothing "
                                        "differ"):
        _trainer(tmp_path / "run", "data.batch_size=8", "train.label_smoothing=0.1").run()
    metrics = _trainer(tmp_path / "run").run()
    assert [s["name"] for s in metrics["stages"]] == ["a", "b"] and metrics["stages"][0]["steps_run"] == 6
    with pytest.raises(TfftError, match="Nothing to resume in .*: it holds no run"):
        _trainer(tmp_path / "empty", resume=True).run()


@pytest.mark.slow  # two whole runs: 36 s beside other work
def test_other_files_are_refused_and_metrics_json_is_strict(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(TfftError, match="already holds files that are not a tfft run"):
        _trainer(tmp_path / "run").run()
    metrics = _trainer(tmp_path / "other").run()
    text = (tmp_path / "other" / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in metrics.json"))
    assert np.isfinite(metrics["accuracy"])


class Spoil(BlobTrainer):
    """Zeroes the head in the last steps of the run: its last validation is at chance."""

    def build_callbacks(self, stage, index):
        import keras

        trainer = self

        class Zero(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(np.asarray(self.model.optimizer.iterations)) >= 10 and index == 1:
                    for variable in trainer.groups[-1].variables:
                        variable.assign(np.zeros(variable.shape, "float32"))

        return [Zero()]


def test_restore_best_chooses_on_a_carved_split_and_reports_the_last_weights_too(tmp_path):
    trainer = Spoil(Recipe().with_overrides(BASE + ["train.validate_every=3"]), out_dir=str(tmp_path / "run"),
                    verbose=0)
    metrics = trainer.run()
    best, last = metrics["best"], metrics["last"]
    assert best["restored"] is True and best["step"] < 12 and best["monitor"] == "val_loss"
    assert last["accuracy"] == pytest.approx(0.25)  # a zero head predicts class 0 for all 4 classes
    assert metrics["accuracy"] > last["accuracy"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"] and saved["best"]["epoch"] == pytest.approx(best["step"] / 8)
    given = _trainer(tmp_path / "given", "data.validation_path='/some/test/set'")
    assert given._restores_best() is False  # nothing is chosen on a validation_path


class EarlyCrash(BlobTrainer):
    """Dies in its first stage, before any checkpoint."""

    def on_stage_begin(self, stage, index):
        raise RuntimeError("crash before the first checkpoint")


def test_a_run_that_stopped_before_its_first_checkpoint_starts_again_in_place(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        EarlyCrash(Recipe().with_overrides(BASE), out_dir=str(run), verbose=0).run()
    assert rundir.state_of(str(run)) == "started" and not (run / "checkpoints").exists()
    with pytest.raises(TfftError, match="stopped before its first checkpoint: schedule.stages differ"):
        _trainer(run, "schedule.stages=[{'name': 'a', 'steps': 3, 'train': 'head', 'lr': 0.01}]").run()
    metrics = _trainer(run).run()  # the same recipe: starts again, nothing to resume
    assert [s["steps_run"] for s in metrics["stages"]] == [6, 6]


class Terminated(BlobTrainer):
    """Sends itself SIGTERM in its second stage, as a preempted machine would."""

    def build_callbacks(self, stage, index):
        import signal

        import keras

        class Term(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if index == 1 and batch == 1:
                    os.kill(os.getpid(), signal.SIGTERM)

        return [Term()]


def test_an_interrupted_replacement_says_how_to_resume_it(tmp_path):
    from tfft.trainer import RunStopped

    _trainer(tmp_path / "run").run()
    with pytest.raises(RunStopped) as stopped:
        Terminated(Recipe().with_overrides(BASE), out_dir=str(tmp_path / "run"), overwrite=True, verbose=0).run()
    assert str(stopped.value).endswith(f"resume with: the same tfft run command with --overwrite (the finished run in "
                                       f"{tmp_path / 'run'} stays until this one ends)")
    metrics = _trainer(tmp_path / "run", overwrite=True, resume=True).run()  # resume=True: refuses a fresh start
    assert [s["steps_run"] for s in metrics["stages"]] == [6, 6]
