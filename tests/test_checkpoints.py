"""Checkpoints: bit-identical round trips, verified on load, a fallback when the newest is damaged."""

import json
import os

import keras
import numpy as np
import pytest

from tfft.callbacks import checkpoints
from tfft.callbacks.checkpoints import CheckpointStore, RunCheckpoints, load_checkpoint, save_checkpoint
from tfft.errors import TfftError

NUM_EXAMPLES, BATCH_SIZE = 32, 4
STEPS_PER_EPOCH = NUM_EXAMPLES // BATCH_SIZE


def _model(units=3, dropout=0.0):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((4,)), keras.layers.Dense(8, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, seed=3))
    model = keras.Sequential(layers + [keras.layers.Dense(units)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True),
                  metrics=["accuracy"])
    return model


def _fit(model, callbacks=(), initial_epoch=0, epochs=1):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(NUM_EXAMPLES, 4)).astype("float32")
    y = rng.integers(0, 3, size=NUM_EXAMPLES)
    model.fit(x, y, batch_size=BATCH_SIZE, validation_data=(x[:8], y[:8]), initial_epoch=initial_epoch,
              epochs=epochs, callbacks=list(callbacks), shuffle=False, verbose=0)


def _values(model):
    return [np.array(w) for w in model.weights], [np.array(v) for v in model.optimizer.variables]


def test_save_then_load_restores_weights_optimizer_and_random_state_bit_for_bit(tmp_path):
    model = _model(dropout=0.5)
    _fit(model)
    weights, moments = _values(model)
    generator = checkpoints.seed_generators(model)[0]
    rng = np.array(generator.state)
    state = {"stage_index": 0, "step": STEPS_PER_EPOCH}
    save_checkpoint(tmp_path / "ckpt", model, model.optimizer, state)
    saved = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert set(saved["files"]) == {"model.weights.h5", "optimizer.npz", "rng.npz"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in saved["files"].values())

    _fit(model, initial_epoch=1, epochs=2)  # moves weights, moments, iterations and the dropout seeds
    assert not np.array_equal(np.array(generator.state), rng)
    assert load_checkpoint(tmp_path / "ckpt", model, model.optimizer) == state
    after_weights, after_moments = _values(model)
    assert all(np.array_equal(a, b) for a, b in zip(weights, after_weights))
    assert all(np.array_equal(a, b) for a, b in zip(moments, after_moments))
    assert np.array_equal(np.array(generator.state), rng)


@pytest.mark.parametrize("name", ["model.weights.h5", "optimizer.npz", "rng.npz", "state.json"])
def test_every_truncated_file_is_caught_and_the_store_falls_back(tmp_path, name):
    model = _model()
    model.optimizer.build(model.trainable_variables)
    store = CheckpointStore(tmp_path)
    store.save(model, model.optimizer, {"step": 8, "position": 8})
    older = _values(model)
    model.set_weights([w + 1.0 for w in model.get_weights()])
    store.save(model, model.optimizer, {"step": 16, "position": 16})
    newest = tmp_path / "step-000016" / name
    newest.write_bytes(newest.read_bytes()[: max(1, newest.stat().st_size // 2)])
    warnings = []
    state = store.load_latest(model, model.optimizer, warn=warnings.append)
    assert state["step"] == 8
    assert len(warnings) == 1 and "step-000016" in warnings[0] and "falling back" in warnings[0]
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(older[0], model.weights))
    # Damage the older one too: one clear error, naming both.
    older_file = tmp_path / "step-000008" / "model.weights.h5"
    older_file.write_bytes(b"\x00" * 10)
    with pytest.raises(TfftError, match="No checkpoint in .* is whole: step-000016: .*; step-000008: .*has 10 bytes"):
        store.load_latest(model, model.optimizer, warn=warnings.append)


def test_store_keeps_the_newest_two_and_cleans_what_a_crash_left(tmp_path):
    model = _model()
    model.optimizer.build(model.trainable_variables)
    store = CheckpointStore(tmp_path)
    for step in (4, 8, 12):
        store.save(model, model.optimizer, {"step": step})
    assert [s for s, _ in store.steps()] == [12, 8]
    (tmp_path / ".step-000016.tmp-abc123").mkdir()
    (tmp_path / ".step-000012.previous").mkdir()
    assert store.clean() == 2 and sorted(os.listdir(tmp_path)) == ["step-000008", "step-000012"]
    assert CheckpointStore(tmp_path / "none").load_latest(model, model.optimizer) is None


def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp_dir(tmp_path, monkeypatch):
    model = _model()
    model.optimizer.build(model.trainable_variables)
    target = tmp_path / "ckpt"
    save_checkpoint(target, model, model.optimizer, {"epoch": 1})
    before = {name: (target / name).read_bytes() for name in os.listdir(target)}

    def crash(path, **arrays):
        with open(path, "wb") as file:
            file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, model, model.optimizer, {"epoch": 2})
    assert os.listdir(tmp_path) == ["ckpt"]
    assert {name: (target / name).read_bytes() for name in os.listdir(target)} == before
    monkeypatch.undo()
    assert load_checkpoint(target, model, model.optimizer) == {"epoch": 1}


def test_load_falls_back_to_backup_left_between_renames(tmp_path):
    model = _model()
    model.optimizer.build(model.trainable_variables)
    save_checkpoint(tmp_path / "last", model, model.optimizer, {"epoch": 1})
    os.replace(tmp_path / "last", tmp_path / ".last.previous")  # crash after the first rename
    assert load_checkpoint(tmp_path / "last", model, model.optimizer) == {"epoch": 1}


def test_load_errors_name_the_problem(tmp_path):
    model = _model(units=3)
    model.optimizer.build(model.trainable_variables)
    save_checkpoint(tmp_path / "ckpt", model, model.optimizer, {})
    with pytest.raises(TfftError, match="No checkpoint found"):
        load_checkpoint(tmp_path / "missing", model, model.optimizer)
    wider = _model(units=5)
    wider.optimizer.build(wider.trainable_variables)
    with pytest.raises(TfftError, match=r"differ in shape.*\(8, 3\) vs .*\(8, 5\)"):
        load_checkpoint(tmp_path / "ckpt", wider, wider.optimizer)
    unbuilt = _model()
    with pytest.raises(TfftError, match=r"holds \d+ optimizer variables .*optimizer\.build"):
        load_checkpoint(tmp_path / "ckpt", unbuilt, unbuilt.optimizer)
    os.remove(tmp_path / "ckpt" / "state.json")
    with pytest.raises(TfftError, match="state.json"):
        load_checkpoint(tmp_path / "ckpt", model, model.optimizer)


@pytest.mark.parametrize("mode, values, best_round", [("min", [0.9, 0.5, 0.7, 0.4, 0.6], 3),
                                                      ("max", [0.2, 0.6, 0.5, 0.6, 0.55], 1)])
def test_best_holds_the_best_validation_weights_without_an_optimizer(tmp_path, mode, values, best_round):
    model = _model()
    model.optimizer.build(model.trainable_variables)
    store = CheckpointStore(tmp_path)
    callback = RunCheckpoints(store, monitor="val_metric", mode=mode, state_fn=lambda: {"position": 0},
                              on_best=lambda state: {"scores.npz": {"seen": np.array(state["step"])}})
    callback.set_model(model)
    for round_index, value in enumerate(values):
        model.optimizer.iterations.assign(round_index + 1)
        # Mark the weights with the round so the files show which one was saved.
        model.set_weights([np.full_like(w, round_index) for w in model.get_weights()])
        callback.on_epoch_end(round_index, {"loss": 1.0, "val_metric": value})
    best = json.loads((tmp_path / "best" / "state.json").read_text())
    assert set(best["files"]) == {"model.weights.h5", "scores.npz"}
    assert best["monitor_value"] == values[best_round] and callback.best_value == values[best_round]
    assert callback.best_info == {"step": best_round + 1, "position": 0, "value": values[best_round]}
    assert [s for s, _ in store.steps()] == [5, 4]
    load_checkpoint(tmp_path / "best", model, model.optimizer)
    assert model.get_weights()[0].flat[0] == best_round
    with np.load(tmp_path / "best" / "scores.npz") as scores:
        assert int(scores["seen"]) == best_round + 1


def test_checkpoints_inside_an_epoch_every_n_steps(tmp_path):
    model = _model()
    store = CheckpointStore(tmp_path, keep=10)
    callback = RunCheckpoints(store, monitor="val_loss", every_steps=3)
    _fit(model, [callback], epochs=2)
    # At both epoch ends (steps 8 and 16), and never more than 3 steps after the last one.
    assert sorted(s for s, _ in store.steps()) == [3, 6, 8, 11, 14, 16]


def test_checkpoints_without_the_monitored_key_never_write_best(tmp_path):
    model = _model()
    model.optimizer.build(model.trainable_variables)
    callback = RunCheckpoints(CheckpointStore(tmp_path), monitor="val_loss")
    callback.set_model(model)
    with pytest.warns(UserWarning, match="'val_loss'.*Available keys: \\['loss'\\]"):
        callback.on_epoch_end(0, {"loss": 0.3})
    assert os.listdir(tmp_path) == ["step-000000"] and callback.best_value is None
    with pytest.raises(TfftError, match="mode='auto'"):
        RunCheckpoints(CheckpointStore(tmp_path), mode="auto")
