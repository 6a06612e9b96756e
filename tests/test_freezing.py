import keras
import numpy as np
import pytest

from tfft.errors import GroupError
from tfft.freezing import (
    GroupRules,
    apply_freezing,
    groups_by_depth,
    layer_groups,
    resolve_group_names,
    valid_boundaries,
)
from tfft.testing import tiny_cnn, tiny_resnet

RESNET = GroupRules(patterns=((r"conv1_|pool1_", "stem"), (r"(conv\d)_", r"\1")))


def test_family_rules_give_block_aware_groups():
    groups = layer_groups(tiny_resnet(32), rules=RESNET)
    assert [g.name for g in groups] == ["stem", "conv2", "conv3", "conv4"]
    # Every residual block's layers, shortcut included, sit in one group.
    conv3 = {layer.name for layer in groups[2].layers}
    assert {"conv3_block1_0_conv", "conv3_block1_1_conv", "conv3_block1_add", "conv3_block1_out"} <= conv3
    assert sum(g.num_params for g in groups) == tiny_resnet(32).count_params() - _bn_statistics(tiny_resnet(32))


def _bn_statistics(model):
    return sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)


def test_boundary_inside_a_residual_block_is_refused():
    model = tiny_resnet(32)
    with pytest.raises(GroupError, match="after layer .conv2_block1_1_relu.*skip connection"):
        layer_groups(model, patterns={"low": "conv1_|conv2_block1_1", "high": "conv2_block1_2|conv2_block1_add|conv2_block1_out|conv[34]"})


def test_valid_boundaries_are_where_one_output_crosses():
    model = tiny_resnet(32)
    names = [op.name for op in model.operations[1:]]
    valid = dict(zip(names, valid_boundaries(model)))
    assert valid["conv1_relu"] and valid["conv2_block1_out"] and valid["conv3_block1_out"]
    assert not valid["conv3_block1_1_conv"] and not valid["conv3_block1_2_bn"]


def test_user_patterns_and_unmatched_layers_follow_their_block():
    groups = layer_groups(tiny_resnet(32), patterns={"early": "conv1_|conv2_", "late": "conv[34]_"})
    assert [g.name for g in groups] == ["early", "late"]
    with pytest.raises(GroupError, match="'nothing'.*match no layer"):
        layer_groups(tiny_resnet(32), patterns={"early": "conv1_|conv2_|conv3_|conv4_", "nothing": "xyz"})


def test_ends_rules_name_groups_after_their_last_layer():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    for i in range(3):
        a = keras.layers.Conv2D(4, 1)(x)
        b = keras.layers.Conv2D(4, 3, padding="same")(x)
        x = keras.layers.Concatenate(name=f"mixed{i}")([a, b])
    model = keras.Model(inputs, x)
    groups = layer_groups(model, rules=GroupRules(ends=r"mixed\d+$"))
    assert [g.name for g in groups] == ["mixed0", "mixed1", "mixed2"]


def test_depth_split_covers_the_model_in_order_without_splitting_blocks():
    model = tiny_resnet(32, blocks=2)
    groups = groups_by_depth(model, 3)
    assert [g.name for g in groups] == ["part1", "part2", "part3"]
    flat = [layer for g in groups for layer in g.layers]
    assert flat == model.layers[1:]
    layer_groups(model, num_groups=3)  # passes the block check
    assert len(layer_groups(tiny_cnn(32), num_groups=2)) == 2


def test_resolve_group_names_tokens_and_unknown_group():
    names = ["stem", "conv2", "conv3", "conv4"]
    assert resolve_group_names(["head", "top:2"], names) == {"head", "conv3", "conv4"}
    assert resolve_group_names("all", names) == set(names) | {"head"}
    assert resolve_group_names(["backbone"], names) == set(names)
    with pytest.raises(GroupError, match=r"Unknown layer group 'conv9'.*Received: groups=\['conv9'\]"):
        resolve_group_names(["conv9"], names)


def test_apply_freezing_sets_flags_and_keeps_batchnorm_frozen_by_default():
    model = tiny_resnet(32)
    groups = layer_groups(model, rules=RESNET)
    apply_freezing(groups, {"conv4"})
    by_name = {l.name: l for l in model.layers}
    assert not by_name["conv3_block1_1_conv"].trainable
    assert by_name["conv4_block1_1_conv"].trainable
    assert not by_name["conv4_block1_1_bn"].trainable
    assert groups[3].num_trainable_params == sum(
        int(np.prod(v.shape)) for l in groups[3].layers if isinstance(l, keras.layers.Conv2D) for v in l.weights
    )
    apply_freezing(groups, {"conv4"}, train_bn=True)
    assert by_name["conv4_block1_1_bn"].trainable
    assert groups[0].num_trainable_params == 0


def test_flags_set_inside_a_layer_by_an_earlier_stage_are_reset():
    # A block that is itself a model, with a BatchNorm inside: on the TensorFlow backend
    # `block.trainable = True` does nothing while the block's flag is True already.
    inner = keras.Input((4,))
    block = keras.Model(inner, keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(4, name="dense")(inner)),
                        name="block")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="top_dense")(block(inputs)))
    groups = layer_groups(model, patterns={"block": "block", "top": "top_"})
    apply_freezing(groups, {"block"})
    assert not block.get_layer("bn").trainable
    block.get_layer("dense").kernel.trainable = False  # as LoRA adapters leave a kernel
    apply_freezing(groups, {"block"}, train_bn=True)
    assert block.get_layer("bn").trainable and block.get_layer("dense").kernel.trainable
    assert groups[0].num_trainable_params == 4 * 4 + 4 + 2 * 4


def test_group_variables_and_reserved_head_name():
    model = tiny_resnet(32)
    groups = layer_groups(model, rules=RESNET)
    assert sum(len(g.variables) for g in groups) == len(model.weights)
    with pytest.raises(GroupError, match="reserved"):
        layer_groups(model, patterns={"head": "conv1_|conv2_", "rest": "conv[34]"})


def test_skip_connections_written_as_plain_tensor_maths_are_seen():
    # ConvNeXt writes its residual as `inputs + x`: an operation, not a layer.
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 1, name="stem_conv")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same", name="block_conv1")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", name="block_conv2")(y)
    z = keras.layers.Conv2D(4, 1, name="top_conv")(x + y)
    model = keras.Model(inputs, z)
    with pytest.raises(GroupError, match="before layer group 'high'.*inside a block"):
        layer_groups(model, patterns={"low": "stem_|block_conv1", "high": "block_conv2|top_"})
    groups = layer_groups(model, patterns={"low": "stem_", "high": "block_|top_"})
    assert [[l.name for l in g.layers] for g in groups] == [["stem_conv"], ["block_conv1", "block_conv2", "top_conv"]]
    assert [len(g.layers) for g in groups_by_depth(model, 2)] in ([1, 3], [3, 1])
