"""Layer groups of a backbone, and freezing them stage by stage.

A backbone is cut into an ordered list of `LayerGroup`s, bottom (input side) to top. Groups
come from one of three sources, in this order of preference:

1. the user's own patterns (`{"early": "conv[23]_", "late": "conv[45]_"}`),
2. the block-aware rules of a known family (ResNet stages, EfficientNet blocks, ...),
3. a depth split of any functional model into parts of similar parameter count.

Whatever the source, a boundary between two groups must be crossed by exactly one layer's
output: that is what "never split a residual block" means in graph terms (a skip connection
reaching over the boundary would be cut). Every grouping is checked for it.
"""

import dataclasses
import re
from typing import Optional

import keras
import numpy as np

from tfft.errors import GroupError

HEAD = "head"


@dataclasses.dataclass
class LayerGroup:
    """A named, contiguous run of a model's layers that is frozen or trained as one.

    Args:
        name: the group's name, used by schedules (`train=["conv5", "head"]`).
        layers: the top-level layers of the group, in topological order.

    Example:
        >>> groups = layer_groups(backbone, family_rules=RESNET_RULES)
        >>> [g.name for g in groups]
        ['stem', 'conv2', 'conv3', 'conv4', 'conv5']
    """

    name: str
    layers: list

    @property
    def variables(self):
        """Every variable of the group, trainable or not."""
        return [v for layer in self.layers for v in layer.weights]

    @property
    def trainable_candidates(self):
        """The variables the group trains when unfrozen (not BatchNorm statistics)."""
        return [v for layer in self.layers for v in _trainable_candidates(layer)]

    @property
    def num_params(self):
        """Parameters the group would train if unfrozen (BatchNorm statistics excluded)."""
        return _count(v for layer in self.layers for v in _trainable_candidates(layer))

    @property
    def num_trainable_params(self):
        """Parameters of the group that train under the current `trainable` flags."""
        return _count(v for layer in self.layers for v in layer.trainable_weights)


@dataclasses.dataclass(frozen=True)
class GroupRules:
    """How a family of backbones is cut into groups.

    Exactly one of `patterns` and `ends` is given.

    Args:
        patterns: ordered `(regex, group_name)` pairs matched against layer names with
            `re.match`; `group_name` may use the regex groups (`r"\\1"`). A layer no pattern
            matches joins the group of the layer before it (leading unmatched layers join the
            first group), so activations and paddings follow their block.
        ends: a regex for the layers that close a group (`r"mixed\\d+$"` for InceptionV3);
            each group is named after the layer that closes it.
        shared: regexes of layers whose output every later block reads as a parameter
            tensor rather than as an activation (DeBERTaV3's relative position embeddings):
            their edges may cross group boundaries.

    Example:
        >>> GroupRules(patterns=[(r"conv1_|pool1_", "stem"), (r"(conv\\d)_", r"\\1")])
    """

    patterns: tuple = ()
    ends: Optional[str] = None
    shared: tuple = ()


def _count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def _sublayers(layer):
    # Keras has no public recursive layer listing; `_flatten_layers` is what `Model.layers`
    # and `summary()` use internally.
    return layer._flatten_layers(include_self=True, recursive=True)


def _is_batch_norm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def _trainable_candidates(layer):
    """Variables a layer trains when it is trainable: not BatchNorm statistics, seeds, counters."""
    # `_trainable_variables` holds what each layer created as trainable, whatever its
    # current `trainable` flag.
    return [v for sub in _sublayers(layer) for v in sub._trainable_variables]


def _graph(model, shared=()):
    """Every operation of a functional model in topological order, and the edges between.

    Operations are layers and also plain tensor maths written in the model's code
    (`inputs + x` in ConvNeXt, the hard sigmoid of MobileNetV3): a skip connection can run
    through those, so the block check must see them. InputLayers are left out. Edges that
    may cross group boundaries are left out too: those leaving a weightless operation
    computed from the inputs alone (the padding mask RoFormer or ESM derive from
    `token_ids` and hand to every layer: another input, in effect), and those leaving a
    layer whose name matches a `shared` regex (see `GroupRules`).
    """
    side = set()
    for op in model.operations:
        parents = [parent.operation for node in op._inbound_nodes for parent in node.parent_nodes]
        weightless = not (_is_layer(op) and op.weights)
        if isinstance(op, keras.layers.InputLayer) or (weightless and parents and all(id(p) in side for p in parents)):
            side.add(id(op))
    ops = [op for op in model.operations if not isinstance(op, keras.layers.InputLayer)]
    index = {id(op): i for i, op in enumerate(ops)}
    exempt = [re.compile(regex) for regex in shared]
    edges = []
    for i, op in enumerate(ops):
        for node in op._inbound_nodes:
            for parent in node.parent_nodes:
                j = index.get(id(parent.operation))
                if j is None or id(parent.operation) in side or any(regex.match(ops[j].name) for regex in exempt):
                    continue
                edges.append((j, i))
    return ops, edges


def _is_layer(op):
    return isinstance(op, keras.layers.Layer)


def valid_boundaries(model, shared=()):
    """For every operation `i` (see `_graph`), whether cutting right after it is clean.

    A cut is clean when everything that crosses it leaves one single operation: a residual
    block cut in two has its skip connection and its main path crossing, two sources.
    """
    ops, edges = _graph(model, shared)
    reach = np.arange(len(ops))
    for parent, child in edges:
        reach[parent] = max(reach[parent], child)
    # Source p crosses the cuts p .. reach[p] - 1: count the sources of each cut in a sweep.
    stops = np.zeros(len(ops), dtype=int)
    for p in range(len(ops)):
        if reach[p] > p:
            stops[reach[p]] += 1
    valid, active = [], 0
    for i in range(len(ops)):
        active += int(reach[i] > i) - stops[i]
        valid.append(bool(active <= 1))
    return valid


def check_groups(model, groups, shared=()):
    """Raise `GroupError` if the groups are not in order or a boundary splits a block."""
    ops, _ = _graph(model, shared)
    position = {id(op): i for i, op in enumerate(ops)}
    valid = valid_boundaries(model, shared)
    end = None
    for group in groups:
        if not group.layers:
            raise GroupError(f"Layer group '{group.name}' matches no layer.")
        indices = sorted(position[id(layer)] for layer in group.layers)
        if end is not None and indices[0] <= end:
            raise GroupError(
                f"Layer group '{group.name}' is not a contiguous run of layers: groups must "
                "follow the model from input to output. Received: "
                f"layers={[layer.name for layer in group.layers][:5]}..."
            )
        # Plain operations between two groups carry no weights: a clean cut anywhere
        # between the last layer of one group and the first of the next will do.
        if end is not None and not any(valid[end : indices[0]]):
            raise GroupError(
                f"The boundary before layer group '{group.name}' (after layer '{ops[end].name}') "
                "is inside a block: a skip connection crosses it. Move the boundary to the "
                "end of the block (where a single output leaves it)."
            )
        end = indices[-1]


def _runs(ops, names):
    """Group consecutive operations by name; `None` (and plain operations) join the run before."""
    assigned = [n for n in names if n is not None]
    current = assigned[0] if assigned else None
    groups = []
    for op, name in zip(ops, names):
        current = name or current
        if not groups or groups[-1].name != current:
            groups.append(LayerGroup(current, []))
        if _is_layer(op):
            groups[-1].layers.append(op)
    groups = [g for g in groups if g.layers]
    _check_unique(groups)
    return groups


def groups_from_patterns(model, patterns):
    """Groups by ordered `(regex, name)` patterns matched against layer names.

    Args:
        model: a functional Keras model.
        patterns: ordered pairs `(regex, group_name)`; see `GroupRules`.

    Returns:
        A list of `LayerGroup`, bottom to top.

    Example:
        >>> groups_from_patterns(model, [("conv1_", "stem"), (r"(conv\\d)_", r"\\1")])
    """
    ops, _ = _graph(model)
    compiled = [(re.compile(regex), name) for regex, name in patterns]
    names = []
    for op in ops:
        name = None
        for regex, template in compiled if _is_layer(op) else ():
            match = regex.match(op.name)
            if match:
                name = match.expand(template)
                break
        names.append(name)
    if all(n is None for n in names):
        raise GroupError(
            "No layer matches the group patterns. Received: "
            f"patterns={[p for p, _ in patterns]}, first layers={[op.name for op in ops[:5]]}"
        )
    return _runs(ops, names)


def groups_from_ends(model, ends):
    """Groups closed by the layers whose names match `ends`; see `GroupRules`.

    Each group runs from just after the previous end to its own end and is named after it;
    layers after the last end join the last group.
    """
    ops, _ = _graph(model)
    regex = re.compile(ends)
    closing = [op.name for op in ops if _is_layer(op) and regex.match(op.name)]
    if not closing:
        raise GroupError(f"No layer name matches the group ends. Received: ends='{ends}'")
    names, pending = [], list(closing)
    for op in ops:
        names.append(pending[0] if pending else closing[-1])
        if pending and op.name == pending[0]:
            pending.pop(0)
    return _runs(ops, names)


def groups_by_depth(model, num_groups):
    """Split any functional model into `num_groups` parts of similar parameter count.

    Cuts are made only where a single output crosses, so blocks stay whole. The parts are
    named `part1` (input side) to `partN`.

    Example:
        >>> [g.name for g in groups_by_depth(model, 3)]
        ['part1', 'part2', 'part3']
    """
    if num_groups < 1:
        raise GroupError(f"num_groups must be at least 1. Received: num_groups={num_groups}")
    ops, _ = _graph(model)
    valid = valid_boundaries(model)
    sizes = [_count(_trainable_candidates(op)) if _is_layer(op) else 0 for op in ops]
    cumulative = np.cumsum(np.array(sizes, dtype=float))
    total = cumulative[-1] if len(cumulative) else 0.0
    candidates = [i for i in range(len(ops) - 1) if valid[i]]
    cuts = []
    for k in range(1, num_groups):
        target = total * k / num_groups
        options = [i for i in candidates if not cuts or i > cuts[-1]]
        if not options:
            break
        cuts.append(min(options, key=lambda i: abs(cumulative[i] - target)))
    names, part = [], 1
    for i in range(len(ops)):
        names.append(f"part{part}")
        if i in cuts:
            part += 1
    groups = _runs(ops, names)
    for number, group in enumerate(groups, start=1):
        group.name = f"part{number}"  # renumber if a part held no layer
    return groups


def _check_unique(groups):
    seen = {}
    for group in groups:
        if group.name in seen:
            raise GroupError(
                f"Layer group '{group.name}' appears in two places: its layers are not "
                "contiguous. Check the group patterns."
            )
        seen[group.name] = group
        if group.name == HEAD:
            raise GroupError("'head' is reserved for the classification head; rename the group.")


def layer_groups(backbone, patterns=None, rules=None, num_groups=4):
    """Cut a backbone into ordered, block-aware layer groups.

    Args:
        backbone: a functional Keras model.
        patterns: the user's groups, a dict `{group_name: regex}` in bottom-to-top order,
            or a list of `(regex, name)` pairs. Takes precedence over `rules`.
        rules: a `GroupRules` for the backbone's family, or None.
        num_groups: parts of the depth split used when neither is given.

    Returns:
        A list of `LayerGroup`, bottom (input side) to top.

    Example:
        >>> groups = layer_groups(backbone, patterns={"low": "conv[12]_", "high": "conv[345]_"})
    """
    if patterns:
        pairs = list(patterns.items()) if isinstance(patterns, dict) else list(patterns)
        pairs = [(regex, name) for name, regex in pairs] if isinstance(patterns, dict) else pairs
        groups = groups_from_patterns(backbone, pairs)
        wanted = [name for _, name in pairs]
        missing = [name for name in wanted if "\\" not in name and name not in {g.name for g in groups}]
        if missing:
            raise GroupError(
                f"Layer group pattern(s) for {missing} match no layer of '{backbone.name}'. "
                f"Layer names start with: {[l.name for l in backbone.layers[1:6]]}"
            )
    elif rules is not None and rules.ends:
        groups = groups_from_ends(backbone, rules.ends)
    elif rules is not None and rules.patterns:
        groups = groups_from_patterns(backbone, rules.patterns)
    else:
        groups = groups_by_depth(backbone, num_groups)
    check_groups(backbone, groups, rules.shared if rules is not None and not patterns else ())
    return groups


def resolve_group_names(spec, names):
    """Resolve a stage's `train` spec to group names.

    Args:
        spec: a list of group names and tokens: `"all"` (every group and the head),
            `"backbone"` (every backbone group), `"top:N"` (the N top backbone groups),
            `"head"`.
        names: the backbone's group names, bottom to top (without the head).

    Returns:
        A set of group names.

    Example:
        >>> resolve_group_names(["head", "top:2"], ["stem", "conv2", "conv3"])
        {'head', 'conv2', 'conv3'}
    """
    if isinstance(spec, str):
        spec = [spec]
    chosen = set()
    for token in spec:
        if token == "all":
            chosen |= set(names) | {HEAD}
        elif token == "backbone":
            chosen |= set(names)
        elif isinstance(token, str) and token.startswith("top:"):
            count = token[4:]
            if not count.isdigit():
                raise GroupError(f"'top:N' needs a whole number N. Received: '{token}'")
            chosen |= set(names[len(names) - int(count):]) if int(count) else set()
        elif token == HEAD or token in names:
            chosen.add(token)
        else:
            raise GroupError(
                f"Unknown layer group '{token}'. Known groups: {names + [HEAD]}, or 'all', "
                f"'backbone', 'top:N'. Received: groups={list(spec)}"
            )
    return chosen


def apply_freezing(groups, trained, train_bn=False):
    """Set `trainable` on every group for one stage.

    Groups in `trained` train, the rest are frozen. Unless `train_bn`, BatchNorm layers stay
    frozen even in trained groups: a frozen BatchNorm runs in inference mode, so its moving
    statistics and its scale and offset are kept while the convolutions around it train.
    Keras 3 would otherwise update the statistics from each small fine-tuning batch.

    A frozen group runs as at inference in the other respect too: its Dropout layers are
    off (Keras keeps them on in training whatever `trainable` says). A frozen backbone then
    gives an example the same features at every step, as the Keras transfer-learning guide's
    `base_model(x, training=False)` does, and those features can be computed once
    (`tfft.feature_cache`). `restore_dropout` puts every rate back (before saving a model).

    Changing `trainable` takes effect only once the model is compiled again: the trainer
    does that at every stage.

    Args:
        groups: every `LayerGroup`, head included.
        trained: names of the groups that train in this stage.
        train_bn: train BatchNorm layers in the trained groups too.
    """
    for group in groups:
        trains = group.name in trained
        for layer in group.layers:
            # The TensorFlow backend skips `layer.trainable = value` when the flag has that
            # value already (KerasAutoTrackable.__setattr__), and with it the reset of the
            # flags inside the layer: passing through the other value makes the last
            # assignment a change, so that flags an earlier stage set on sublayers or
            # variables (a nested BatchNorm, a kernel under LoRA adapters) are reset.
            layer.trainable = not trains
            layer.trainable = trains
            for sub in _sublayers(layer):
                if trains and not train_bn and _is_batch_norm(sub):
                    sub.trainable = False
                _switch_dropout(sub, on=trains)


# Keras's layers that drop or perturb activations in training, and the attribute that says
# how much: set to 0 while their group is frozen, the original kept in `_tfft_rate`.
_RANDOM_RATES = ((keras.layers.Dropout, "rate"), (keras.layers.GaussianDropout, "rate"),
                 (keras.layers.AlphaDropout, "rate"), (keras.layers.GaussianNoise, "stddev"))


def _switch_dropout(layer, on):
    for kind, attribute in _RANDOM_RATES:
        if isinstance(layer, kind):
            if not on and not hasattr(layer, "_tfft_rate"):
                layer._tfft_rate = getattr(layer, attribute)
                setattr(layer, attribute, 0.0)
            elif on and hasattr(layer, "_tfft_rate"):
                setattr(layer, attribute, layer._tfft_rate)
                del layer._tfft_rate
            return


def restore_dropout(model):
    """Put back the rate of every Dropout layer in `model` that a frozen group switched off."""
    for sub in _sublayers(model):
        _switch_dropout(sub, on=True)


def random_layers(layer):
    """The layers inside `layer` that act at random in training: Dropout-like layers with a
    rate above 0, and any other layer drawing from a `keras.random.SeedGenerator`."""
    found = []
    for sub in _sublayers(layer):
        attribute = next((name for kind, name in _RANDOM_RATES if isinstance(sub, kind)), None)
        if attribute is not None:
            if getattr(sub, attribute):
                found.append(sub)
        elif any(isinstance(g, keras.random.SeedGenerator) for g in getattr(sub, "_seed_generators", [])):
            found.append(sub)
    return found
