"""`tfft check-data`: what a data set holds and what is wrong with it, without training.

Per split and class, how many examples; files that cannot be read; examples whose content
is exactly the same in training and validation (by SHA-256 of the file, or of the text),
which make validation figures too good; classes with no validation or too few training
examples. Label sets that disagree between the splits are an error of the data builders,
reported here as a problem too.
"""

import collections
import hashlib
import os

from tfft.errors import DataError


def _digest(item):
    if isinstance(item, str) and os.path.isfile(item):
        with open(item, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def check_datasets(datasets):
    """`(lines, problems)`: a report of `datasets` (built with `on_error="skip"`)."""
    names = datasets.class_names
    counts = {split: collections.Counter() for split in ("train", "validation")}
    for split, items in datasets.items.items():
        for _, label in items:
            for index in (label if isinstance(label, tuple) else (label,)):
                counts[split][names[index]] += 1
    width = max(12, *(len(n) + 2 for n in names))
    lines = [f"{'class':<{width}} {'training':>9} {'validation':>11}"]
    lines += [f"{name:<{width}} {counts['train'][name]:>9} {counts['validation'][name]:>11}" for name in names]
    lines.append(f"{'total':<{width}} {datasets.num_train:>9} {datasets.num_validation:>11}")
    problems = [f"unreadable: {path} ({reason})" for path, reason in datasets.skipped]
    train = collections.defaultdict(list)
    for item, _ in datasets.items.get("train", []):
        train[_digest(item)].append(item)
    for item, _ in datasets.items.get("validation", []):
        twins = train.get(_digest(item))
        if twins:
            problems.append(f"duplicate across training and validation: {_show(item)} = {_show(twins[0])}")
    for name in names:
        if counts["train"][name] < 2:
            problems.append(f"class {name!r} has {counts['train'][name]} training examples")
        if datasets.items.get("validation") and not counts["validation"][name]:
            problems.append(f"class {name!r} has no validation example")
    return lines, problems


def _show(item):
    text = " ".join(str(item).split())
    if len(text) <= 100:
        return text
    return "..." + text[-97:] if os.path.sep in text else text[:97] + "..."  # a path's end says most


class _NoPreprocessing:
    preprocess = None


def check_recipe_data(recipe):
    """Build the recipe's data with every file checked and left out when unreadable, and
    report on it. Returns `(lines, problems)`."""
    import dataclasses

    from tfft.data.build import datasets_from_recipe

    config = dataclasses.replace(recipe.data, on_error="skip", verify=True, cache=False)
    try:
        datasets = datasets_from_recipe(config, _NoPreprocessing(), recipe.backbone.input_size)
    except DataError as error:
        return [], [str(error)]
    return check_datasets(datasets)
