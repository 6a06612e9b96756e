"""Build a run's datasets from the recipe's `data` section: the demo set when no source is
given, then the modality's own builder (`tfft.modalities`)."""

import dataclasses
import os
import re

from tfft import modalities
from tfft.errors import DataError


def cache_dir():
    """Where tfft keeps generated data: `$TFFT_CACHE`, else `~/.cache/tfft`."""
    return os.path.expanduser(os.environ.get("TFFT_CACHE", os.path.join("~", ".cache", "tfft")))


def expand(path):
    return os.path.expanduser(path) if isinstance(path, str) else path


def datasets_from_recipe(config, backbone, input_size, dry_run=False, verbose=0, statistics=None):
    """Return the `Datasets` that `config` (a `DataConfig`) describes; errors name recipe keys.

    Args:
        config: the recipe's `data` section.
        backbone: the built `Backbone`: its `preprocess` runs in the pipeline.
        input_size: the backbone's input size (images).
        dry_run: list the data without decoding every file.
        verbose: say where generated data comes from.
        statistics: `Datasets.statistics` of a trained model to normalise with.
    """
    try:
        return _datasets(config, backbone, input_size, dry_run, verbose, statistics)
    except DataError as error:
        raise DataError(recipe_keys(str(error))) from None


# Builder arguments that are `data.` keys under the same name, and the few that are not.
_RENAMED = {"csv": "manifest", "image_size": "image_size"}


def recipe_keys(message):
    """A builder's message with its argument names as a recipe writes them: `verify=False`
    becomes `--set data.verify=false`, `text_column='x'` becomes `data.text_column='x'`.

    Example:
        >>> recipe_keys("pass verify=False to skip this check. Received: label_column='y'")
        "pass --set data.verify=false to skip this check. Received: data.label_column='y'"
    """
    from tfft.recipe import DataConfig

    message = re.sub(r"\b(?:pass|or) (verify|on_error)=(False|'skip')",
                     lambda m: ("pass " if m.group(0).startswith("pass") else "or ")
                     + f"--set data.{m.group(1)}={'false' if m.group(2) == 'False' else 'skip'}", message)
    fields = "|".join(sorted({f.name for f in dataclasses.fields(DataConfig)} | set(_RENAMED), key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])({fields})=", lambda m: f"data.{_RENAMED.get(m.group(1), m.group(1))}=", message)


def _datasets(config, backbone, input_size, dry_run, verbose, statistics):
    modality = modalities.get(config.kind)
    sources = dict(path=config.path, manifest=config.manifest, validation_path=config.validation_path)
    keys = modality.source_keys(config)
    if all(getattr(config, key) is None for key in keys):
        if config.synthetic is None:
            given = ", ".join(f"data.{key}=" + ("DIR" if key == "path" else "NAME" if key == "tfds" else "FILE")
                              for key in keys)
            raise DataError(f"No {config.kind} data given: set one of {given}. Received: data.{keys[0]}=None")
        names = modality.synthetic_sets(config)
        if config.synthetic not in names:
            built_in = f"one is '{names[0]}'" if len(names) == 1 else "ones are " + ", ".join(f"'{n}'" for n in names)
            raise DataError(f"Unknown synthetic data set for {config.kind} data: the built-in {built_in}. "
                            f"Received: data.synthetic={config.synthetic!r}")
        sources.update(modality.demo_set(config, input_size, verbose))
    elif config.tfds is not None and modality.tfds_feature is not None:
        sources.update(modality.tfds_sources(config, verbose))
    datasets = modality.datasets(config, backbone, input_size, dry_run=dry_run, sources=sources, statistics=statistics)
    # A validation split from a source of its own may be a test set (the text demo sets'
    # test files are): the trainer must not choose on it. `holdout` replaces it with a part
    # of the training data.
    datasets.separate_validation = sources["validation_path"] is not None and config.holdout is None
    return datasets


def say_demo(verbose, name, directory):
    """Say where a built-in demo set comes from."""
    if verbose:
        print(f"no data given: using the built-in synthetic '{name}' set in {directory}", flush=True)
