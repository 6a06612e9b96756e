"""Recipes: a short Python file of plain values that describes one fine-tuning job.

A recipe file assigns dicts to a few section names and may define a `tfft.Trainer`
subclass:

```python
backbone = dict(name="ResNet50", weights="imagenet", input_size=224)
data = dict(path="~/mri", batch_size=32, augment=dict(flip=True, rotation=0.05))
schedule = dict(kind="two_phase", head_epochs=2, epochs=8, finetune_lr=1e-4)
trainer = MyTrainer          # optional, a tfft.Trainer subclass defined above
demo = {"data.image_size": 64, "schedule.epochs": 3}   # applied by `tfft run --demo`
```

Every value is checked against the section's dataclass: an unknown key or a value of the
wrong type is a `RecipeError` that names the key. `--set data.path=/x` overrides any value,
with the same checks. Names in UPPER_CASE, names starting with `_`, imports, functions and
classes are the file's own business and are not sections.
"""

import ast
import dataclasses
import difflib
import os
import runpy
import types
import typing
from typing import Optional, Union

from tfft.errors import RecipeError
from tfft.schedules import ScheduleConfig


@dataclasses.dataclass
class BackboneConfig:
    """The `backbone` section.

    Args:
        name: a Keras application (`"ResNet50"`, `"EfficientNetB0"`, ...), a `.keras` file,
            or for text a keras-hub encoder: `"minilm-l6"`, a keras-hub or Hugging Face
            model directory, a `kaggle://` / `hf://` handle, a keras-hub preset name.
        weights: `"pretrained"` (ImageNet for applications, the preset's for encoders),
            `"imagenet"`, a weights file, or None for random initialisation.
        input_size: image height and width fed to the backbone.
        family: layer-group rules to use for a `.keras` backbone (`"resnet"`, ...).
        groups: your own layer groups, `{name: regex}` bottom to top; overrides the family.
        num_groups: parts of the depth split used when there are neither.
    """

    name: str = "ResNet50"
    weights: Optional[str] = "pretrained"
    input_size: int = 224
    family: Optional[str] = None
    groups: dict = dataclasses.field(default_factory=dict)
    num_groups: int = 4


@dataclasses.dataclass
class CommonDataKeys:
    """The `data` keys every modality reads. Each modality adds its own (`data.n_mels` for
    audio, `data.sequence_length` for text, ...: `tfft/modalities/<kind>/keys.py`); a key
    of another modality than `kind` is an error that says whose key it is.

    Args:
        kind: the modality: `"image"`, `"text"` or `"audio"`.
        path: a class-per-folder tree (images; `.txt` files for text; recordings for audio).
        manifest: a CSV file: `path,label` columns for images and audio (paths relative to
            the file); for text, the columns `text_column` and `label_column`.
        tfds: a TensorFlow Datasets name (`"tf_flowers"`, `"speech_commands"`,
            `"imdb_reviews"`), split by `tfds_split`. Images and recordings are written
            once as class folders in tfft's cache and read like a folder.
        tfds_split: `[train_split, validation_split]` of a TFDS data set; a validation split
            of None holds out `validation_split` of the training split.
        validation_path: the validation split, of the same kind as the source (a folder
            tree, a CSV or JSON-lines file).
        validation_split: fraction held out for validation when there is no
            `validation_path` (stratified, seeded).
        holdout: None, or a fraction of each class of the training split held out in place
            of the validation split, which is then not read at all: how `schedule.kind="auto"`
            and `tfft tune` score their candidates on training data only.
        batch_size: global batch size, across all replicas.
        augment: training-only augmentation; None is the modality's default, `"strong"` its
            strong preset for few examples (RandAugment for images, wider SpecAugment masks
            for audio), `{}` turns it off. Images: `dict(flip=True, rotation=0.05, zoom=0.1,
            contrast=0.1)`; audio: `dict(time_mask=2, time_mask_width=10, freq_mask=2,
            freq_mask_width=8, shift=0.1, gain_db=6)` (add `noise_snr_db=20` for noisy
            deployments). Text has none.
        cache: cache decoded examples in memory (True), in a file (a path), or not (False).
        class_weights: None, `"balanced"`, or `{class_name: weight}`.
        synthetic: when no data source is set, generate this built-in data set so the
            recipe runs anywhere: `"mri"` (images), `"tickets"`, `"contract_clauses"` or
            `"financial_news"` (text), `"keywords"` (spoken words, made with espeak-ng);
            None makes a missing source an error.
        synthetic_per_class: examples per class of the synthetic set (None: its default).
        seed: seed of the split, shuffling and augmentation.
        verify: decode every file once before training to name any corrupt one.
        on_error: `"raise"`: a file that cannot be read is an error naming it (before
            training when `verify`); `"skip"`: every file is checked before training, the
            bad ones are left out and listed in the run's `skipped.txt`.
    """

    kind: str = "image"
    path: Optional[str] = None
    manifest: Optional[str] = None
    tfds: Optional[str] = None
    tfds_split: list = dataclasses.field(default_factory=lambda: ["train", "test"])
    validation_path: Optional[str] = None
    validation_split: float = 0.2
    holdout: Optional[float] = None
    batch_size: int = 32
    augment: Union[None, dict, str] = None
    cache: Union[bool, str] = True
    class_weights: Union[None, str, dict] = None
    synthetic: Optional[str] = None
    synthetic_per_class: Optional[int] = None
    seed: int = 0
    verify: bool = True
    on_error: str = "raise"


def _data_config():
    """`DataConfig`: the common keys, then each modality's own, in one flat section."""
    from tfft import modalities

    fields, seen = [], set()
    for owner in (CommonDataKeys,) + tuple(modalities.keys_of(kind) for kind in modalities.KINDS):
        hints = typing.get_type_hints(owner)
        for field in dataclasses.fields(owner):
            if field.name in seen:
                continue
            seen.add(field.name)
            spec = dataclasses.field(default=field.default) if field.default_factory is dataclasses.MISSING \
                else dataclasses.field(default_factory=field.default_factory)
            fields.append((field.name, hints[field.name], spec))
    doc = ("The `data` section: `CommonDataKeys` and the keys of each modality "
           "(`tfft.modalities.<kind>.keys`).")
    return dataclasses.make_dataclass("DataConfig", fields, namespace={"__doc__": doc, "__module__": __name__})


DataConfig = _data_config()


def check_modality_keys(config):
    """Raise a `RecipeError` for a `data` key of another modality than `config.kind` set
    away from its default: `data.n_mels is an audio key; data.kind is 'image'`."""
    from tfft import modalities

    if config.kind not in modalities.KINDS:
        return  # the data builder names the unknown kind
    own = {field.name for field in dataclasses.fields(modalities.keys_of(config.kind))}
    common = {field.name for field in dataclasses.fields(CommonDataKeys)}
    defaults = DataConfig()
    for field in dataclasses.fields(DataConfig):
        name = field.name
        if name in own or name in common or getattr(config, name) == getattr(defaults, name):
            continue
        readers = " or ".join(modalities.readers_of(name))
        article = "an" if readers[:1] in "aeiou" else "a"
        raise RecipeError(f"data.{name} is {article} {readers} key; data.kind is {config.kind!r}. "
                          f"Received: data.{name}={getattr(config, name)!r}")


@dataclasses.dataclass
class HeadConfig:
    """The `head` section: what sits on the backbone's features.

    Args:
        pooling: images: `"avg"` or `"max"` over the spatial axes; text: `"avg"` (mean of
            the token vectors under the padding mask) or `"cls"` (the encoder's pooler).
        dropout: dropout rate before the classifier.
        hidden: units of an extra dense ReLU layer; 0 for none.
    """

    pooling: str = "avg"
    dropout: float = 0.2
    hidden: int = 0


@dataclasses.dataclass
class TrainConfig:
    """The `train` section.

    Args:
        optimizer: `"adamw"` or `"sgd"`.
        weight_decay: decoupled weight decay of kernels, scaled by each group's rate.
        l2_sp: L2-SP (Li et al., 2018), decoupled like the weight decay: every step pulls
            each backbone weight toward its pretrained value by `l2_sp x rate` of the
            distance, in place of the decay toward zero; the head still decays. 0: off.
        monitor: the value that picks the best checkpoint and drives early stopping.
        label_smoothing: label smoothing of the cross-entropy loss.
        validate_every: optimizer steps between validations (and checkpoints); every stage
            also validates at its end. None: every epoch, but at most 10 times in a run.
        checkpoint_every: a checkpoint to resume from is written at every validation and
            also every this many steps (an int) or this much time (`"10min"`, `"600s"`,
            `"1h"`) in between; None: at validations only.
        on_nan: at a non-finite loss, `"stop"` (keep the last good checkpoint, exit with
            code 3) or `"rollback"` (go back to it, halve the stage's rate, go on; at most 3
            times).
        restore_best: the final model and `metrics.json` come from the best validation of
            `monitor` (True), the last weights (False), or `"auto"`: the best when the
            validation split is carved from the training data, the last when it is a
            `validation_path` (which may be a test set: nothing is chosen on it).
    """

    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    l2_sp: float = 0.0
    monitor: str = "val_loss"
    label_smoothing: float = 0.0
    validate_every: Optional[int] = None
    checkpoint_every: Union[None, int, str] = "10min"
    on_nan: str = "stop"
    restore_best: Union[bool, str] = "auto"


@dataclasses.dataclass
class RuntimeConfig:
    """The `runtime` section.

    Args:
        strategy: `"auto"` (multi-worker when `TF_CONFIG` or Slurm names a cluster, else
            mirrored over the visible GPUs, else one device), `"multi_worker"`,
            `"mirrored"`, `"one_device"`, `"tpu"` or `"default"` (docs/distributed.md).
        devices: devices for `"mirrored"` / `"one_device"`, e.g. `["/cpu:0", "/cpu:1"]`.
        mixed_precision: `"auto"` (`mixed_bfloat16` on TPU, `mixed_float16` on GPUs with
            tensor cores, float32 otherwise), True (`mixed_float16`), False,
            `"mixed_float16"`, `"mixed_bfloat16"` or `"float32"`.
        jit_compile: passed to `Model.compile`; `"auto"` lets Keras decide (XLA on GPU
            and TPU, never on a machine with CPUs only, where it is slower for conv nets).
        steps_per_execution: training steps per call of the compiled step (Keras's
            `steps_per_execution`): on a TPU, 32 to 100 hide the host's per-call cost.
            Callbacks see every `steps_per_execution`-th step, so the step-wise checks
            (checkpoints every N steps, a signal, a non-finite loss) act at that grain.
        cache_features: fit a stage that trains the head alone on the frozen backbone's
            outputs, computed once, when every epoch shows the backbone the same examples
            (no random crop or augmentation): same result, without the backbone's forward
            pass at every step (`tfft.feature_cache`; `tfft plan` says which stages do).
        seed: global seed of Keras, TensorFlow and NumPy.
        deterministic: TensorFlow's op determinism (`enable_op_determinism`): the same
            recipe and seed give bit-identical weights, and a resumed run those of an
            uninterrupted one; some ops get slower.
    """

    strategy: str = "auto"
    devices: list = dataclasses.field(default_factory=list)
    mixed_precision: Union[bool, str] = "auto"
    jit_compile: Union[bool, str] = "auto"
    steps_per_execution: int = 1
    cache_features: bool = True
    seed: int = 0
    deterministic: bool = False


@dataclasses.dataclass
class OutputConfig:
    """The `output` section.

    Args:
        dir: run directory; `tfft run --out` overrides it. Default: `runs/<recipe name>`.
        log_every: steps between training-loss points in TensorBoard (at least 1).
        checkpoints: what stays of the full checkpoints (weights, optimizer, data position)
            once the run has finished: `"resume"` (default) keeps the newest two while the
            run trains, for a resume, and removes them at its end (`model.keras` and
            `checkpoints/best`, weights only, stay); `"last"` keeps the newest one, to train
            on from it; `"all"` keeps every one, each validation's.
        health: at every validation, log each layer group's distance from its pretrained
            weights, gradient norm and update ratio to TensorBoard, and warn when a frozen
            group moved or a trained group's updates are too large (`tfft.callbacks.health`).
    """

    dir: Optional[str] = None
    log_every: int = 20
    checkpoints: str = "resume"
    health: bool = True


SECTIONS = {
    "backbone": BackboneConfig,
    "data": DataConfig,
    "head": HeadConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
    "runtime": RuntimeConfig,
    "output": OutputConfig,
}
SPECIAL = ("trainer", "demo", "tune")


@dataclasses.dataclass
class Recipe:
    """A resolved recipe: every section with defaults filled in and overrides applied.

    Example:
        >>> recipe = load_recipe("recipes/tumor_resnet.py", overrides=["schedule.epochs=4"])
        >>> recipe.schedule.epochs
        4
    """

    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    trainer: Optional[type] = None
    source: Optional[str] = None
    demo: dict = dataclasses.field(default_factory=dict)
    tune: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        """Plain values of every section, as saved in the run directory."""
        values = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        values["trainer"] = None if self.trainer is None else f"{self.trainer.__module__}.{self.trainer.__qualname__}"
        values["source"] = self.source
        return values

    def with_overrides(self, overrides):
        """A copy with `dotted.key=value` strings applied; see `apply_override`."""
        recipe = dataclasses.replace(self, **{n: dataclasses.replace(getattr(self, n)) for n in SECTIONS})
        for override in overrides:
            if "=" not in override:
                raise RecipeError(f"--set takes dotted.key=value. Received: {override!r}")
            key, text = override.split("=", 1)
            apply_override(recipe, key.strip(), parse_value(text.strip()))
        check_modality_keys(recipe.data)
        return recipe


def parse_value(text):
    """Parse a `--set` value: a Python literal if it is one, else the text itself.

    Example:
        >>> parse_value("3"), parse_value("1e-4"), parse_value("[1, 2]"), parse_value("~/data")
        (3, 0.0001, [1, 2], '~/data')
    """
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(recipe, key, value):
    """Set `section.field` (or `section.field.subkey` of a dict field) on `recipe`."""
    parts = key.split(".")
    if parts[0] not in SECTIONS or len(parts) < 2:
        raise RecipeError(f"Unknown recipe key {key!r}: keys look like section.field with a section in {list(SECTIONS)}.{_suggest(parts[0], SECTIONS)}")
    section = getattr(recipe, parts[0])
    field = _field(parts[0], parts[1])
    if len(parts) == 2:
        setattr(section, parts[1], check_value(key, value, field.type))
        return
    current = getattr(section, parts[1])
    if current is None and key.startswith("data.augment."):
        from tfft import modalities  # one key changes the modality's default

        current = dict(modalities.get(recipe.data.kind).augment)
    if current is None and key.startswith("schedule.lora."):
        current = {}  # `--set schedule.lora.rank=4` turns LoRA on with that rank
    if not isinstance(current, dict):
        raise RecipeError(f"{parts[0]}.{parts[1]} is not a dict, so {key!r} cannot be set.")
    current = dict(current)
    target = current
    for part in parts[2:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
    setattr(section, parts[1], current)


def _field(section, name):
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
    if name not in fields:
        raise RecipeError(f"Unknown recipe key '{section}.{name}'.{_suggest(name, fields)} Known keys of '{section}': {sorted(fields)}")
    field = fields[name]
    field.type = typing.get_type_hints(SECTIONS[section])[name]
    return field


def _suggest(name, choices):
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def check_value(key, value, annotation):
    """Check `value` against a field's type annotation; ints are accepted for floats."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) is Union else (annotation,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (bool, str, list, dict) and isinstance(value, option):
            return value
    if str in options and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # `--set data.path=2024` parses as a number but means the text
    expected = " or ".join("None" if o is type(None) else o.__name__ for o in options)
    raise RecipeError(f"{key} must be {expected}. Received: {key}={value!r}")


def _section(name, values, path):
    if isinstance(values, str) and name == "backbone":
        values = {"name": values}
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: '{name}' must be a dict of values. Received: {name}={values!r}")
    config = SECTIONS[name]()
    for key, value in values.items():
        field = _field(name, key)
        setattr(config, key, check_value(f"{name}.{key}", value, field.type))
    return config


def load_recipe(path, overrides=(), demo=False):
    """Load a recipe file, apply its `demo` values (if `demo`) and then `overrides`.

    Args:
        path: the recipe's `.py` file.
        overrides: `dotted.key=value` strings, as given to `--set`.
        demo: apply the recipe's `demo` dict first.

    Returns:
        A `Recipe`.

    Raises:
        RecipeError: missing file, syntax error, unknown section or key, wrong type.

    Example:
        >>> recipe = load_recipe("recipes/tumor_resnet.py", demo=True)
    """
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise RecipeError(f"Recipe file not found: {path}")
    try:
        namespace = runpy.run_path(path, run_name="tfft_recipe")
    except SyntaxError as error:
        raise RecipeError(f"Syntax error in recipe {path}, line {error.lineno}: {error.msg}") from None
    except Exception as error:  # the recipe is user code: report what it raised, in one line
        raise RecipeError(f"Recipe {path} raised {type(error).__name__}: {error}") from None
    recipe = Recipe(source=os.path.abspath(path))
    for name, value in namespace.items():
        if name == "trainer":
            recipe.trainer = _check_trainer(value, path)
        elif name.startswith("_") or name.isupper() or _is_code(value):
            continue
        elif name in SECTIONS:
            setattr(recipe, name, _section(name, value, path))
        elif name in ("demo", "tune"):
            if not isinstance(value, dict):
                raise RecipeError(f"{path}: '{name}' must be a dict of dotted keys. Received: {name}={value!r}")
            setattr(recipe, name, dict(value))
        else:
            raise RecipeError(f"{path}: unknown recipe section '{name}'.{_suggest(name, list(SECTIONS) + list(SPECIAL))} Sections: {list(SECTIONS) + list(SPECIAL)}")
    if demo:
        recipe = recipe.with_overrides(f"{k}={v!r}" for k, v in recipe.demo.items())
    return recipe.with_overrides(overrides)


def _is_code(value):
    return isinstance(value, (types.ModuleType, types.FunctionType, type))


def _check_trainer(value, path):
    from tfft.trainer import Trainer

    if not (isinstance(value, type) and issubclass(value, Trainer)):
        raise RecipeError(f"{path}: 'trainer' must be a tfft.Trainer subclass. Received: trainer={value!r}")
    return value


def recipe_from_run(directory):
    """The recipe a run directory was started with: its `recipe.py` copy (for a `trainer`
    class it defines) with every value of its `recipe.json` applied.

    Example:
        >>> recipe = recipe_from_run("runs/mri")   # what `tfft resume runs/mri` trains
    """
    import json

    directory = os.path.expanduser(str(directory))
    values_path = os.path.join(directory, "recipe.json")
    if not os.path.isfile(values_path):
        raise RecipeError(f"{directory} is not a tfft run directory: it has no recipe.json.")
    with open(values_path, encoding="utf-8") as file:
        values = json.load(file)
    copy = os.path.join(directory, "recipe.py")
    recipe = load_recipe(copy) if os.path.isfile(copy) else Recipe()
    overrides = [f"{section}.{key}={value!r}" for section in SECTIONS for key, value in values.get(section, {}).items()]
    recipe = recipe.with_overrides(overrides)
    if recipe.trainer is None and values.get("trainer"):
        recipe.trainer = _import_trainer(values["trainer"], directory)
    recipe.source = values.get("source") or recipe.source
    return recipe


def _import_trainer(qualified, directory):
    import importlib

    module, _, name = qualified.rpartition(".")
    try:
        return _check_trainer(getattr(importlib.import_module(module), name), directory)
    except (ImportError, AttributeError):
        raise RecipeError(f"The run in {directory} used the trainer {qualified}, which cannot be imported here: "
                          "resume it with `tfft run` and its recipe file.") from None
