"""Contract clauses labelled with their type, for legal text-classification demos offline.

Why clause types: a legal team rarely needs a model to say what kind of document a
contract is (its title says so). What costs lawyers hours is finding and comparing the
provisions inside hundreds of agreements: in due diligence ("which contracts can the
counterparty terminate on a change of control?"), in contract-management systems that
extract a contract's key terms, and in reviews against a negotiation playbook ("is the
liability cap at least the annual fees?"). The public sets for this task, LEDGAR and CUAD,
label provisions by type too. Eight types that such reviews check in almost every
commercial agreement are the classes: assignment, confidentiality, force majeure,
governing law (with jurisdiction and dispute resolution, usually one section),
indemnification, limitation of liability, payment terms and termination.

Each clause is written in contract English: an optional number and heading, an operative
sentence (what the clause does), sometimes a sentence or two on other aspects of the same
clause, and sometimes boilerplate that refers to other sections by title. The sentences
come in paraphrase families (one per aspect, e.g. "termination for material breach"), and
every family and heading pool is split three ways (`paraphrases.split_pool`): validation
clauses say the same things as training clauses in partly different words. The types share
their vocabulary as real clauses do: a force-majeure clause lets a party terminate, a
limitation of liability excludes breaches of confidentiality from its cap, a termination
clause makes the customer pay the fees accrued, an assignment clause allows a transfer on
a merger. Some clauses are in capitals (as US contracts print liability clauses) or carry
the typing errors of a retyped or scanned document.
"""

import os
import tempfile

from tfft.data.checks import check_int
from tfft.modalities.text import contract_clause_phrases as phrases
from tfft.modalities.text.paraphrases import (
    add_typos, class_splits, fill, pick, sentence, split_pool, write_splits,
)

CONTRACT_CLAUSE_CLASSES = (
    "assignment", "confidentiality", "force_majeure", "governing_law", "indemnification",
    "limitation_of_liability", "payment_terms", "termination",
)
NAME = "contract_clauses"

# Bump when the pools or the assembly change, so that older sets are regenerated.
_VERSION = 1
_STREAM = 2  # tells this set's random numbers apart from the other sets' (same seed)


def _number(rng):
    """A section number in one of the styles contracts use, or none."""
    major, minor = int(rng.integers(2, 20)), int(rng.integers(1, 9))
    return pick(rng, [f"{major}.{minor}", f"{major}.", f"Section {major}.{minor}", f"Article {major}",
                      f"({'abcdefgh'[minor - 1]})", "", ""])


def _clause(label, split, rng):
    """One clause of type `label`, built only from the phrases `split` may use."""
    a, b = pick(rng, phrases.PARTIES)
    law, venue, city = pick(rng, phrases.JURISDICTIONS)
    values = dict(a=a, b=b, law=law, venue=venue, city=city)
    families = [split_pool(family, split) for family in phrases.CORE[label]]
    first = int(rng.integers(len(families)))
    order = [first] + [int(i) for i in rng.permutation(len(families)) if i != first]
    # One to three aspects of the clause, the first being its operative sentence.
    count = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.08)
    parts = [sentence(fill(pick(rng, families[f]), rng, phrases.SLOTS, values)) for f in order[:count]]
    if rng.random() < 0.3:
        other = pick(rng, [name for name in phrases.TITLES if name != label])
        title = dict(title=phrases.TITLES[other])
        parts.append(fill(pick(rng, phrases.CROSS_REFERENCES), rng, phrases.SLOTS, title))
    if rng.random() < 0.2:
        parts.append(fill(pick(rng, phrases.BOILERPLATE), rng, phrases.SLOTS))
    text = " ".join(parts)

    heading = pick(rng, split_pool(phrases.HEADINGS[label], split)) if rng.random() < 0.2 else ""
    number = _number(rng)
    if heading:
        text = f"{heading}. {text}"
    if number:
        text = f"{number} {text}"
    # US contracts print liability clauses in capitals to make them conspicuous.
    capitals = 0.3 if label == "limitation_of_liability" else 0.05
    if rng.random() < capitals:
        text = text.upper()
    if rng.random() < 0.15:
        text = add_typos(text, rng, 1 + int(rng.integers(2)))
    return text


def contract_clause_splits(per_class_train=24, per_class_test=100, seed=0):
    """Generate training and test contract clauses in memory.

    Training clauses use the training and shared phrase pools, test clauses the test and
    shared pools, so a test clause usually words its provisions as no training clause
    does. Both splits are shuffled; the same arguments always give the same clauses.

    Args:
        per_class_train: training clauses per class.
        per_class_test: test clauses per class.
        seed: integer seed.

    Returns:
        `(train_texts, train_labels, test_texts, test_labels, class_names)`: lists of
        strings, int32 numpy arrays of indices into `class_names`, and
        `list(CONTRACT_CLAUSE_CLASSES)`.

    Example:
        >>> x, y, test_x, test_y, names = contract_clause_splits(16, 50, seed=0)
        >>> len(x), len(test_x), names[y[0]] in names
        (128, 400, True)
    """
    per_class_train = check_int("per_class_train", per_class_train, 1)
    per_class_test = check_int("per_class_test", per_class_test, 1)
    seed = check_int("seed", seed, 0)
    splits = class_splits(_clause, CONTRACT_CLAUSE_CLASSES, per_class_train, per_class_test, seed, _STREAM)
    return (*splits, list(CONTRACT_CLAUSE_CLASSES))


def make_contract_clauses(directory=None, per_class=24, seed=0, test_per_class=100):
    """Write the contract clauses as CSV files and return their folder.

    `contract_clauses.csv` holds `per_class` training clauses per class and
    `contract_clauses_test.csv` `test_per_class` test clauses per class, both with a
    `text,label` header, so that `text_datasets(csv=..., validation_path=...)` reads them
    directly. The folder is written whole and renamed into place; a `.complete` marker
    records the parameters, and a second call with the same ones returns at once.

    Args:
        directory: folder for the files; created if needed. None uses
            `tfft-contract-clauses` in the system's temporary folder.
        per_class: training clauses per class; the default suits few-shot fine-tuning.
        seed: integer seed.
        test_per_class: test clauses per class.

    Returns:
        The folder, as a string.

    Raises:
        DataError: for bad arguments, when `directory` is a file, or when it holds files
            that this function did not write (they are never overwritten).

    Example:
        >>> folder = make_contract_clauses("/tmp/clauses", per_class=16)
        >>> data = text_datasets(csv=os.path.join(folder, "contract_clauses.csv"),
        ...                      validation_path=os.path.join(folder, "contract_clauses_test.csv"))
        >>> data.num_train
        128
    """
    per_class = check_int("per_class", per_class, 1)
    test_per_class = check_int("test_per_class", test_per_class, 1)
    seed = check_int("seed", seed, 0)
    if directory is None:
        directory = os.path.join(tempfile.gettempdir(), "tfft-contract-clauses")
    params = dict(classes=list(CONTRACT_CLAUSE_CLASSES), per_class=per_class, test_per_class=test_per_class,
                  seed=seed, version=_VERSION)
    return write_splits(directory, NAME, lambda: contract_clause_splits(per_class, test_per_class, seed), params)
