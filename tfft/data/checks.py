"""Argument checks shared by the data builders and generators.

Each check raises a `DataError` whose message names the argument and the value received,
and returns the value in the type the caller works with (`int`, `float`, a dict...). The
builders (`image.py`, `audio.py`, `text.py`), the audio feature and augmentation settings
and the synthetic data generators all check their arguments with these, so the same
mistake gets the same message whichever of them it is made in.
"""

import math
import numbers
import os

import numpy as np

from tfft.errors import DataError


def positive_int(name, value):
    """`value` as an int, which must be 1 or more."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DataError(f"{name} must be a positive int. Received: {name}={value!r}")
    return int(value)


def check_int(name, value, minimum):
    """`value` as an int, which must be at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{name} must be an int >= {minimum}. Received: {name}={value!r}")
    return int(value)


def number(name, value, minimum=None, below=None):
    """`value` as a finite float, at least `minimum` and below `below` when given."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (below is None or value < below)
    if not ok:
        bounds = [f">= {minimum}"] if minimum is not None else []
        bounds += [f"< {below}"] if below is not None else []
        wanted = " and ".join(bounds) or "finite"
        raise DataError(f"{name} must be a number {wanted}. Received: {name}={value!r}")
    return float(value)


def is_fraction(value):
    """Whether `value` is a real number strictly between 0 and 1 (a bool is not)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and 0 < value < 1
    )


def check_validation_split(validation_split, alternative="pass validation_path"):
    """Raise unless `validation_split` is strictly between 0 and 1.

    `alternative` completes the message with the other way to get a validation split.
    """
    if not is_fraction(validation_split):
        raise DataError(
            f"validation_split must be strictly between 0 and 1, or {alternative}. "
            f"Received: validation_split={validation_split!r}"
        )


def check_path_or_manifest(path, manifest):
    """Raise unless exactly one of `path` and `manifest` is given."""
    if (path is None) == (manifest is None):
        raise DataError(
            "Pass exactly one of `path` (a class-per-folder tree) and `manifest` (a CSV). "
            f"Received: path={path!r}, manifest={manifest!r}"
        )


def check_preprocess(preprocess):
    """Raise unless `preprocess` is None or callable."""
    if preprocess is not None and not callable(preprocess):
        raise DataError(
            f"preprocess must be a callable or None. Received: preprocess={preprocess!r}"
        )


def check_cache(cache):
    """Raise unless `cache` is a bool or a file path prefix."""
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise DataError(
            "cache must be True (memory), False or a file path prefix. "
            f"Received: cache={cache!r}"
        )


def augment_settings(augment, defaults):
    """An `augment` argument as a dict of keys of `defaults`, or None when it is off.

    None and False turn augmentation off, True stands for `defaults`, and a dict may hold
    any of the keys of `defaults`; checking the values is left to the caller.
    """
    if augment is None or augment is False:
        return None
    if augment is True:
        augment = defaults
    if not isinstance(augment, dict):
        raise DataError(
            f"augment must be None, True or a dict such as {defaults}. "
            f"Received: augment={augment!r}"
        )
    unknown = sorted(set(augment) - set(defaults))
    if unknown:
        raise DataError(
            f"Unknown augment keys {unknown}; valid keys are {list(defaults)}. "
            f"Received: augment={augment!r}"
        )
    return augment
