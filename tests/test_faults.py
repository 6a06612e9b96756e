"""Faults a run survives or stops at cleanly: a non-finite loss, bad data files."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tfft.cli import main
from tfft.recipe import Recipe
from tfft.testing import BlobTrainer, write_recipe
from tfft.trainer import RunStopped

pytestmark = pytest.mark.filterwarnings("ignore")

STAGES = ("schedule.stages=[{'name': 'a', 'steps': 8, 'train': 'head', 'lr': 0.01}, "
          "{'name': 'b', 'steps': 12, 'train': 'all', 'lr': 0.003}]")
BASE = ["data.batch_size=16", "schedule.kind='custom'", STAGES, "train.checkpoint_every=3"]


class Poison(BlobTrainer):
    """Turns a head weight into NaN once, at global step 14 (stage b): as a blown-up update would."""

    poisoned = False

    def build_callbacks(self, stage, index):
        import keras

        trainer = self

        class Inject(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if not Poison.poisoned and int(np.asarray(self.model.optimizer.iterations)) == 13:
                    Poison.poisoned = True
                    kernel = trainer.groups[-1].layers[-1].kernel
                    kernel.assign(np.full(kernel.shape, np.nan, "float32"))

        return [Inject()]


def _poisoned(tmp_path, *overrides):
    Poison.poisoned = False
    return Poison(Recipe().with_overrides(BASE + list(overrides)), out_dir=str(tmp_path / "run"), verbose=0)


def test_a_nan_stops_at_once_keeping_the_last_good_checkpoint_and_saving_no_model(tmp_path):
    trainer = _poisoned(tmp_path)
    with pytest.raises(RunStopped) as stopped:
        trainer.run()
    assert stopped.value.exit_code == 3
    message = str(stopped.value)
    assert message.startswith("non-finite loss at stage 2/2 'b', step 6 of 12 (global step 14")
    assert "train.on_nan='rollback'" in message
    run = tmp_path / "run"
    assert not (run / "model.keras").exists() and not (run / "metrics.json").exists()
    newest = sorted(os.listdir(run / "checkpoints"))[-1]
    assert newest == "step-000011"  # the last one before the NaN step; none after it
    state = json.loads((run / "checkpoints" / newest / "state.json").read_text())
    assert state["step"] == 11 and all(np.isfinite(v) for v in state["logs"].values())


def test_rollback_goes_back_to_the_last_good_checkpoint_at_half_the_rate(tmp_path, capsys):
    trainer = _poisoned(tmp_path, "train.on_nan='rollback'")
    metrics = trainer.run()
    out = capsys.readouterr().out
    assert "non-finite loss at stage 'b', global step 14: rolled back to step 11; the stage goes on at lr 0.0015" in out
    assert metrics["stages"][1]["lr"] == pytest.approx(0.0015)
    assert all(np.isfinite(np.asarray(w)).all() for w in trainer.model.weights)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    import keras

    saved = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert all(np.isfinite(np.asarray(w)).all() for w in saved.weights)


def test_a_real_divergence_ends_with_exit_code_3_and_one_line(tmp_path):
    data = tmp_path / "images"
    from tfft.testing import write_image_folder

    write_image_folder(data, num_classes=3, per_class=8, size=32)
    recipe = write_recipe(tmp_path / "r.py", f"""
        from tfft.testing import TinyTrainer
        trainer = TinyTrainer
        backbone = dict(input_size=32)
        data = dict(path={str(data)!r}, batch_size=8, augment={{}}, validation_split=0.25)
        schedule = dict(kind="custom", stages=[dict(steps=6, train="all", lr=1e30)])
    """)
    result = CliRunner().invoke(main, ["run", recipe, "--out", str(tmp_path / "run")])
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("non-finite loss at stage 1/1 'stage0', step 2 of 6 (global step 2")
    assert not (tmp_path / "run" / "model.keras").exists()


class Interrupted(BlobTrainer):
    """Sends itself SIGINT (Ctrl-C) after global step 10."""

    def build_callbacks(self, stage, index):
        import signal

        import keras

        class Send(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(np.asarray(self.model.optimizer.iterations)) == 10:
                    os.kill(os.getpid(), signal.SIGINT)

        return [Send()]


def test_ctrl_c_checkpoints_the_next_step_and_stops_with_exit_code_130(tmp_path):
    trainer = Interrupted(Recipe().with_overrides(BASE), out_dir=str(tmp_path / "run"), verbose=0)
    with pytest.raises(RunStopped) as stopped:
        trainer.run()
    assert stopped.value.exit_code == 130
    assert str(stopped.value).startswith("SIGINT: stopped at stage 2/2 'b', step 3 of 12 (global step 11")
    assert "step-000011" in os.listdir(tmp_path / "run" / "checkpoints")
    resumed = BlobTrainer(Recipe().with_overrides(BASE), out_dir=str(tmp_path / "run"), verbose=0).run()
    assert [s["steps_run"] for s in resumed["stages"]] == [8, 12]


@pytest.mark.slow  # a run rolled back and resumed: 18 s beside other work
def test_a_rollback_to_a_stages_last_checkpoint_says_the_stage_ends_there(tmp_path, capsys):
    class EarlyPoison(Poison):
        def build_callbacks(self, stage, index):
            import keras

            trainer = self

            class Inject(keras.callbacks.Callback):
                def on_train_batch_begin(self, batch, logs=None):
                    if not EarlyPoison.poisoned and int(np.asarray(self.model.optimizer.iterations)) == 8:
                        EarlyPoison.poisoned = True  # the first step of stage b
                        kernel = trainer.groups[-1].layers[-1].kernel
                        kernel.assign(np.full(kernel.shape, np.nan, "float32"))

            return [Inject()]

    EarlyPoison.poisoned = False
    trainer = EarlyPoison(Recipe().with_overrides(BASE + ["train.on_nan='rollback'"]), out_dir=str(tmp_path / "run"),
                          verbose=1)
    metrics = trainer.run()
    out = capsys.readouterr().out
    assert "rolled back to step 8" in out, out
    assert "stage 1/2 'a': resuming after its last step (8): the stage ends here" in out and "step 9 of 8" not in out
    assert sum(stage["steps_run"] for stage in metrics["stages"]) == 20
