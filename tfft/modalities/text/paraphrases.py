"""What the generated text demo sets share: paraphrase pools split between training and
test, slot filling, noise, and writing a set as two CSV files.

A demo set says each thing in several paraphrases. `split_pool` gives the training split
some of them, the test split others and both a few, so that the test examples state what
the training examples state in partly different words: a model that understands language
does well on them, one that memorises words does not. `class_splits` draws a set's
examples with one random generator per example, so an example never depends on how many
are drawn, and shuffles each split; `write_splits` writes the splits once as `NAME.csv`
and `NAME_test.csv` (`text,label` columns) into a folder of their own, which
`text_datasets(csv=..., validation_path=...)` reads directly.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> split_pool(["a", "b", "c", "d", "e"], "train")
    ['a', 'c', 'd']
    >>> fill("{who} paid {amount}", rng, {"who": ["Anna"], "amount": lambda rng: "$5"})
    'Anna paid $5'
"""

import csv
import os
import string

import numpy as np

from tfft.data import generated

# Position in a pool, modulo 5 -> the split that may use the item: about 40 % of every
# pool is training-only, 40 % test-only and 20 % shared.
_ROLES = {0: "train", 1: "test", 2: "both", 3: "train", 4: "test"}
SPLITS = ("train", "test")


def split_pool(items, split):
    """The items of a paraphrase pool that the `"train"` or `"test"` split may use.

    Items at positions 0, 3, 5, 8, ... are training-only, 1, 4, 6, 9, ... test-only and
    2, 7, ... shared, so a pool of five gives two phrasings to each split and one to both.

    Args:
        items: the pool, a list of phrases (or anything else to draw from).
        split: `"train"` or `"test"`.

    Returns:
        The list of items `split` may use, in pool order.

    Example:
        >>> split_pool(["a", "b", "c", "d", "e"], "test")
        ['b', 'c', 'e']
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")
    return [item for i, item in enumerate(items) if _ROLES[i % 5] in (split, "both")]


def pick(rng, items):
    """One item of `items`, drawn with the numpy generator `rng`.

    Args:
        rng: a `numpy.random.Generator`.
        items: a non-empty sequence.

    Example:
        >>> pick(np.random.default_rng(0), ["x", "y", "z"]) in ("x", "y", "z")
        True
    """
    return items[int(rng.integers(len(items)))]


def fill(template, rng, slots, values=None):
    """`template` with every `{slot}` replaced: from `values` if given there, else drawn
    from `slots[slot]`, a list to pick from or a function of `rng`.

    A slot that occurs twice gets one value. Slots are drawn in the order they first occur
    (not in set order, which changes with the hash seed and would change the draws).

    Args:
        template: a `str.format` template.
        rng: a `numpy.random.Generator`.
        slots: `{name: list of strings or function(rng) -> string}`.
        values: `{name: string}` fixed for this template, e.g. both parties of a contract.

    Returns:
        The filled string.

    Example:
        >>> fill("{a} owes {b} {sum}", np.random.default_rng(0), {"sum": ["$9"]},
        ...      values={"a": "the Buyer", "b": "the Seller"})
        'the Buyer owes the Seller $9'
    """
    names = dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template) if name)
    filled = {}
    for name in names:
        if values and name in values:
            filled[name] = values[name]
        else:
            source = slots[name]
            filled[name] = source(rng) if callable(source) else pick(rng, source)
    return template.format(**filled)


def sentence(clause):
    """`clause` with a capital first letter and a full stop unless it ends in `.`, `?` or `!`.

    Args:
        clause: a non-empty string.

    Example:
        >>> sentence("the parties agree")
        'The parties agree.'
    """
    clause = clause[0].upper() + clause[1:]
    return clause if clause[-1] in ".?!" else clause + "."


def _typo(word, rng):
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(3))
    if kind == 0:  # two letters swapped
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # one letter dropped
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]  # one letter doubled


def add_typos(text, rng, count):
    """`text` with up to `count` of its alphabetic words of five letters or more mistyped
    (two letters swapped, one dropped or one doubled).

    Args:
        text: the text; words are separated by single spaces.
        rng: a `numpy.random.Generator`.
        count: how many words to mistype.

    Example:
        >>> add_typos("the payment schedule", np.random.default_rng(1), 1) != "the payment schedule"
        True
    """
    words = text.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    for _ in range(min(count, len(candidates))):
        i = candidates.pop(int(rng.integers(len(candidates))))
        words[i] = _typo(words[i], rng)
    return " ".join(words)


def class_splits(example, class_names, per_class_train, per_class_test, seed, stream):
    """Draw a set's training and test examples, `per_class_*` of every class, shuffled.

    Every example has its own generator, seeded with `(seed, stream, split, class, index)`:
    the same arguments always give the same examples, and the first examples of a larger
    draw are those of a smaller one.

    Args:
        example: `example(label, split, rng) -> str`, one example of class `label` (a
            name of `class_names`) from the phrases `split` may use.
        class_names: the class names; the labels returned index this sequence.
        per_class_train: training examples per class.
        per_class_test: test examples per class.
        seed: the user's integer seed.
        stream: an integer that tells the sets apart, so that two sets drawn with the same
            seed use unrelated random numbers; None only for the support tickets, which were
            published before there were streams and are seeded without one.

    Returns:
        `(train_texts, train_labels, test_texts, test_labels)`: lists of strings and int32
        numpy arrays of indices into `class_names`.

    Example:
        >>> texts, labels, _, _ = class_splits(lambda label, split, rng: label, ["a", "b"],
        ...                                    2, 1, seed=0, stream=7)
        >>> sorted(texts), labels.dtype
        (['a', 'a', 'b', 'b'], dtype('int32'))
    """
    key = [seed] if stream is None else [seed, stream]
    drawn = []
    for code, split in enumerate(SPLITS):
        count = per_class_train if split == "train" else per_class_test
        texts, labels = [], []
        for index, label in enumerate(class_names):
            for i in range(count):
                texts.append(example(label, split, np.random.default_rng([*key, code, index, i])))
                labels.append(index)
        order = np.random.default_rng([*key, code, 1_000_003]).permutation(len(texts))
        drawn += [[texts[i] for i in order], np.asarray(labels, np.int32)[order]]
    return tuple(drawn)


def write_csv(f, texts, labels, class_names):
    """Write a split to the open text file `f` as a `text,label` header and one row per
    example, its label written as the class name.

    The caller opens `f` (with `newline=""`, as the csv module needs), so that a set
    written in place can write through a temporary file (`generated.replace_file`).

    Args:
        f: a text file open for writing.
        texts: the examples' texts.
        labels: their indices into `class_names`.
        class_names: the class names.

    Example:
        >>> import io
        >>> f = io.StringIO(newline="")
        >>> write_csv(f, ["x"], [1], ["a", "b"])
        >>> f.getvalue().splitlines()
        ['text,label', 'x,b']
    """
    writer = csv.writer(f)
    writer.writerow(["text", "label"])
    writer.writerows((text, class_names[label]) for text, label in zip(texts, labels))


def write_splits(directory, name, splits, params):
    """Write a set's splits as `NAME.csv` and `NAME_test.csv` in `directory`, once.

    A `.complete` marker records `params`; a second call with the same ones returns at
    once without drawing anything. The files are written in a temporary folder beside
    `directory` and renamed into place (`tfft.data.generated.write_folder`), and a folder
    that holds files this function did not write is never touched.

    Args:
        directory: the set's folder; created if needed.
        name: the set's name, the stem of its file names.
        splits: a function returning `(train_texts, train_labels, test_texts,
            test_labels, class_names)`; called only when the files must be written.
        params: a JSON-serialisable dict of everything the texts depend on (sizes, seed,
            the generator's version).

    Returns:
        `directory`, as a string.

    Raises:
        DataError: when `directory` is a file, or a non-empty folder without a marker.

    Example:
        >>> folder = write_splits("/tmp/abc", "abc", lambda: (["x"], [0], ["y"], [0], ["a"]),
        ...                       dict(version=1))
        >>> sorted(os.listdir(folder))
        ['.complete', 'abc.csv', 'abc_test.csv']
    """
    directory = os.fspath(directory)
    generated.check_folder(directory, f"the {name} set", f"a {name} set")
    if generated.is_current(directory, params):
        return directory

    def write(staging):
        train_texts, train_labels, test_texts, test_labels, class_names = splits()
        for stem, texts, labels in ((name, train_texts, train_labels), (f"{name}_test", test_texts, test_labels)):
            with open(os.path.join(staging, f"{stem}.csv"), "w", newline="", encoding="utf-8") as f:
                write_csv(f, texts, labels, class_names)

    generated.write_folder(directory, params, write)
    return directory
