import keras
import numpy as np
import pytest

from tfft.errors import RecipeError
from tfft.optimizers import SGD, AdamW, make_optimizer


def _variables(n=3):
    values = np.linspace(0.5, 1.5, 6, dtype="float32").reshape(2, 3)
    return [keras.Variable(values, name=f"v{i}") for i in range(n)]


def _step(optimizer, variables, factors):
    optimizer.build(variables)
    optimizer.set_factors([([v], f) for v, f in zip(variables, factors)])
    before = [v.numpy().copy() for v in variables]
    grads = [keras.ops.ones_like(v) * 0.3 for v in variables]
    optimizer.apply(grads, variables)
    return [v.numpy() - b for v, b in zip(variables, before)], before


@pytest.mark.parametrize("optimizer", [AdamW(1e-2), SGD(1e-2, momentum=0.9)], ids=["adamw", "sgd"])
def test_factor_half_takes_half_the_first_step_and_zero_does_not_move(optimizer):
    variables = _variables()
    deltas, before = _step(optimizer, variables, [1.0, 0.5, 0.0])
    assert np.all(deltas[0] < 0)
    np.testing.assert_allclose(deltas[1], 0.5 * deltas[0], rtol=1e-4, atol=1e-7)
    assert np.array_equal(variables[2].numpy(), before[2])


def test_factor_zero_leaves_adam_moments_untouched():
    optimizer = AdamW(1e-2)
    variables = _variables(2)
    _step(optimizer, variables, [1.0, 0.0])
    momentum = {v.path: v.numpy() for v in optimizer.variables}
    moved = [k for k, v in momentum.items() if "v1" in k and np.any(v != 0)]
    assert moved == []
    assert any(np.any(v != 0) for k, v in momentum.items() if "v0" in k)


def test_weight_decay_scales_with_the_factor_and_skips_vectors():
    optimizer = AdamW(1e-2, decoupled_weight_decay=0.5)
    variables = _variables(2) + [keras.Variable(np.ones(3, "float32"), name="bias")]
    optimizer.build(variables)
    optimizer.set_factors([([variables[0]], 1.0), ([variables[1]], 0.5), ([variables[2]], 1.0)])
    before = [v.numpy().copy() for v in variables]
    optimizer.apply([keras.ops.zeros_like(v) for v in variables], variables)
    # Zero gradients: Adam does not move, only the decay does: v * lr * factor * wd.
    np.testing.assert_allclose(before[0] - variables[0].numpy(), before[0] * 1e-2 * 0.5, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(before[1] - variables[1].numpy(), before[1] * 1e-2 * 0.5 * 0.5, rtol=1e-4, atol=1e-7)
    assert np.array_equal(variables[2].numpy(), before[2])


def test_make_optimizer_and_config_round_trip():
    optimizer = make_optimizer("adamw", 1e-3, weight_decay=1e-4)
    assert isinstance(optimizer, AdamW) and optimizer.decoupled_weight_decay == 1e-4
    clone = AdamW.from_config(optimizer.get_config())
    assert clone.decoupled_weight_decay == 1e-4
    with pytest.raises(RecipeError, match="Unknown optimizer.*'adam'"):
        make_optimizer("adam", 1e-3)


def test_l2_sp_pulls_toward_the_anchor_instead_of_decaying_toward_zero():
    # SGD without momentum and a zero gradient: only the decoupled terms move the weights.
    optimizer = SGD(0.1, momentum=0.0, decoupled_weight_decay=0.5)
    anchored, free = _variables(2)
    optimizer.build([anchored, free])
    anchor = keras.Variable(np.full((2, 3), 2.0, "float32"), trainable=False)
    optimizer.set_anchors([(anchored, anchor)], strength=3.0)
    before = [anchored.numpy().copy(), free.numpy().copy()]
    optimizer.apply([keras.ops.zeros_like(anchored), keras.ops.zeros_like(free)], [anchored, free])
    # anchored: w - lr * strength * (w - anchor); free: w - lr * decay * w.
    np.testing.assert_allclose(anchored.numpy(), before[0] - 0.1 * 3.0 * (before[0] - 2.0), rtol=1e-6)
    np.testing.assert_allclose(free.numpy(), before[1] - 0.1 * 0.5 * before[1], rtol=1e-6)


def test_a_float_rate_becomes_a_schedule_so_the_variables_never_change():
    optimizer = make_optimizer("adamw", 1e-3)
    variables = _variables(1)
    optimizer.build(variables)
    paths = [v.path for v in optimizer.variables]
    optimizer.learning_rate = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    assert [v.path for v in optimizer.variables] == paths
    assert not any("learning_rate" in path for path in paths)
