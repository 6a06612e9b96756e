"""The learning-rate range test: a sound suggestion, no trace left, a command and a recipe value."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tfft.cli import main
from tfft.errors import TfftError
from tfft.lr_finder import ExponentialSweep, suggest
from tfft.recipe import Recipe
from tfft.testing import BlobTrainer, write_image_folder, write_recipe

pytestmark = pytest.mark.filterwarnings("ignore")

BASE = ["data.batch_size=16", "schedule.kind='custom'", "train.weight_decay=0"]


def _trainer(tmp_path, lr, steps=60, name="run"):
    stages = [dict(name="all", steps=steps, train="all", lr=lr)]
    return BlobTrainer(Recipe().with_overrides(BASE + [f"schedule.stages={stages!r}"]),
                       out_dir=str(tmp_path / name), verbose=0)


@pytest.mark.slow  # a sweep and a run at each of several rates: 60 s beside other work
def test_suggestion_is_within_a_factor_of_3_of_the_best_constant_rate(tmp_path):
    trainer = _trainer(tmp_path, "find")
    trainer.setup()
    test = trainer.find_learning_rate(trainer.stages[0])
    # The known good rate: the constant rate whose 60 steps end at the lowest training loss.
    rates = np.logspace(-4, 0, 9)
    losses = [_trainer(tmp_path, float(rate), name=f"r{i}").run()["stages"][0]["loss"] for i, rate in enumerate(rates)]
    best = rates[int(np.argmin(losses))]
    assert best / 3 <= test.suggestion <= best * 3, (test.suggestion, best, losses)
    assert "minimum" in test.rule and test.stopped


def test_the_sweep_leaves_weights_and_optimizer_as_they_were(tmp_path):
    trainer = _trainer(tmp_path, 1e-3)
    trainer.setup()
    weights = [np.array(v) for v in trainer.model.weights]
    state = {v.path: np.array(v) for v in trainer.optimizer.variables}
    test = trainer.find_learning_rate(trainer.stages[0], steps=40)
    assert len(test.rates) > 8 and test.rates[0] == pytest.approx(1e-7)
    assert all(np.array_equal(a, np.array(v)) for a, v in zip(weights, trainer.model.weights))
    assert all(np.array_equal(state[v.path], np.array(v)) for v in trainer.optimizer.variables)


def test_a_stage_rate_of_find_is_chosen_when_the_stage_starts(tmp_path, capsys):
    stages = [dict(name="head", steps=20, train="head", lr=1e-2), dict(name="all", steps=30, train="all", lr="find")]
    trainer = BlobTrainer(Recipe().with_overrides(BASE + [f"schedule.stages={stages!r}"]),
                          out_dir=str(tmp_path / "run"), verbose=1)
    metrics = trainer.run()
    found = trainer.range_tests["all"].suggestion
    assert metrics["stages"][1]["lr"] == found and metrics["stages"][1]["planned_lr"] == "find"
    assert metrics["stages"][0]["lr"] == 1e-2 and "head" not in trainer.range_tests
    assert f"learning-rate finder suggests {found:.3g}" in capsys.readouterr().out
    assert os.path.isfile(tmp_path / "run" / "lr_find_all.png")


class _SeparableBlobs(BlobTrainer):
    blobs = dict(BlobTrainer.blobs, spread=0.05)


def test_a_sweep_that_starts_on_fitted_data_says_so(tmp_path):
    # The head stage fits well-separated blobs to a loss near zero; a range test after it
    # has no curve to read, and its error says why and what to give instead.
    stages = [dict(name="head", steps=200, train="head", lr=0.3), dict(name="all", steps=10, train="all", lr="find")]
    trainer = _SeparableBlobs(Recipe().with_overrides(BASE + [f"schedule.stages={stages!r}"]),
                              out_dir=str(tmp_path / "run"), verbose=0)
    with pytest.raises(TfftError) as raised:
        trainer.run()
    message = str(raised.value)
    assert message.startswith("Stage 'all': the learning-rate sweep stopped after")
    assert "near zero when the stage began" in message and "instead of 'find'" in message


def test_rules_and_their_errors():
    rates = np.logspace(-6, 0, 60)
    losses = np.concatenate([np.full(20, 2.0), np.linspace(2.0, 0.4, 25), np.linspace(0.4, 6.0, 15)])
    steep = suggest(rates, losses, "steepest")
    assert rates[20] <= steep <= rates[44]
    assert suggest(rates, losses, "minimum") == pytest.approx(rates[44] / 10)
    assert rates[20] <= suggest(rates, losses, "valley") <= rates[44]
    with pytest.raises(TfftError, match="too few to suggest"):
        suggest(rates[:5], losses[:5])
    with pytest.raises(TfftError, match="Unknown learning-rate rule"):
        suggest(rates, losses, "biggest")
    sweep = ExponentialSweep(1e-6, 1.0, steps=61, start_step=10)
    assert float(sweep(10)) == pytest.approx(1e-6) and float(sweep(70)) == pytest.approx(1.0, rel=1e-5)
    assert sweep.rate(30) == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.slow  # the command end to end, twice: 22 s
def test_lr_find_command_prints_the_rate_and_writes_the_curve(tmp_path, monkeypatch):
    from tfft import multi_worker

    # On a host of a cluster the sweep still runs in this process alone.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    monkeypatch.setattr(multi_worker, "multi_worker_strategy", lambda task: pytest.fail("lr-find joined the cluster"))
    data = tmp_path / "images"
    write_image_folder(data, num_classes=3, per_class=8, size=32)
    recipe = write_recipe(tmp_path / "tiny.py", f"""
        from tfft.testing import TinyTrainer
        trainer = TinyTrainer
        backbone = dict(input_size=32)
        data = dict(path={str(data)!r}, batch_size=8, augment={{}}, validation_split=0.25)
        schedule = dict(kind="two_phase", head_steps=6, steps=12, unfreeze=1)
    """)
    out = tmp_path / "lr"
    result = CliRunner().invoke(main, ["lr-find", recipe, "--stage", "finetune", "--steps", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "stage 'finetune' (trains conv4, head)" in result.output
    assert "suggested learning rate:" in result.output and "--set schedule.finetune_lr=" in result.output
    saved = json.loads((out / "lr_find.json").read_text())
    assert saved["stage"] == "finetune" and len(saved["rates"]) == len(saved["smoothed"]) > 8
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(main, ["lr-find", recipe, "--stage", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "Unknown stage 'nope'. The recipe's stages: ['head', 'finetune']" in bad.output


def test_noise_on_the_flat_start_does_not_pass_for_the_descent():
    from tfft.lr_finder import suggest

    # The shape of a real fine-tune's sweep: flat and noisy for three decades, a shallow fall
    # to the minimum near 1e-3, then divergence. The steepest-fall rule picks a wiggle of the
    # flat part (on the real sweep, 5e-7); the default rule must not.
    rates = np.logspace(-7, 1, 100)
    rng = np.random.default_rng(0)
    flat = 0.6 + 0.02 * np.sin(np.arange(100) * 1.7) + 0.01 * rng.standard_normal(100)
    fall = np.clip(np.log10(rates) + 4, 0, 1) * 0.08
    rise = np.clip(np.log10(rates) + 3, 0, None) ** 2 * 0.3
    losses = np.where(rates < 1e-4, flat, 0.6 - fall) + rise
    assert 5e-5 <= suggest(rates, losses) <= 1.5e-3
    assert suggest(rates, losses, "steepest") < 1e-4  # what the default avoids
