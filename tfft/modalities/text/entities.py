"""IOB2 tags, the entities they mark and entity-level precision, recall and F1.

A tag is `O` (outside any entity), `B-TYPE` (the first word of an entity of `TYPE`) or
`I-TYPE` (a later word of it). Entities are read as conlleval reads them, which is also
seqeval's default mode: an entity starts at `B-X`, and at an `I-X` that does not continue an
entity of type `X` (after `O`, after a word of another type, or as the first word: a broken
start, as IOB1 files write every entity); it runs on over the `I-X` that follow. So
`O I-PER I-PER` holds one person, and `B-PER I-ORG` a person and an organisation.

`repair` rewrites such a broken start as `B-X`, which marks the same entities in IOB2;
`entity_report` scores predicted entities against the true ones: an entity is found only
when its type, first word and last word all match.

Example:
    >>> spans(["B-PARTY", "I-PARTY", "O", "I-DATE"])
    [('PARTY', 0, 2), ('DATE', 3, 4)]
    >>> entity_report([["B-PARTY", "I-PARTY", "O"]], [["B-PARTY", "O", "O"]])["f1"]
    0.0
"""

import numpy as np

from tfft.errors import DataError

OUTSIDE = "O"


def parse_tag(tag):
    """`(prefix, type)` of one IOB2 tag: `("O", None)`, `("B", "PARTY")` or `("I", "PARTY")`.

    Raises:
        ValueError: anything else (say `E-PARTY`, `PARTY`, `B-`): the caller names the file.

    Example:
        >>> parse_tag("I-COURT")
        ('I', 'COURT')
    """
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, dash, kind = str(tag).partition("-")
    if prefix not in ("B", "I") or not dash or not kind.strip() or kind != kind.strip():
        raise ValueError(f"'{tag}' is not an IOB2 tag: O, B-TYPE or I-TYPE")
    return prefix, kind


def check_tags(tags, where):
    """Raise a `DataError` naming `where` unless every tag of `tags` is IOB2.

    Args:
        tags: the tags of one line or sentence.
        where: the file and line, as the message names them.

    Example:
        >>> check_tags(["B-PER", "E-PER"], "train.conll, line 3")   # DataError: 'E-PER' is not ...
    """
    for number, tag in enumerate(tags, 1):
        if not isinstance(tag, str):
            raise DataError(f"{where}: tag {number} is not a string; tags are O, B-TYPE or I-TYPE. "
                            f"Received: tag={tag!r}")
        try:
            parse_tag(tag)
        except ValueError as error:
            raise DataError(f"{where}: {error} (BIOES and bare types are not read: write the "
                            f"tags as IOB2). Received: tag={tag!r}") from None


def spans(tags):
    """The entities of one tag sequence: `(type, first_word, end_word)` tuples, `end_word`
    one past the last word, in order.

    Example:
        >>> spans(["O", "I-PER", "I-PER", "B-PER", "I-ORG"])
        [('PER', 1, 3), ('PER', 3, 4), ('ORG', 4, 5)]
    """
    found = []
    current = None  # [type, start]
    for index, tag in enumerate(tags):
        prefix, kind = parse_tag(tag)
        if current is not None and (prefix != "I" or kind != current[0]):
            found.append((current[0], current[1], index))
            current = None
        if prefix != OUTSIDE and current is None:
            current = [kind, index]
    if current is not None:
        found.append((current[0], current[1], len(tags)))
    return found


def repair(tags):
    """`(tags, count)`: `tags` with every `I-X` that starts an entity written `B-X`, and how
    many were rewritten. The entities stay the same; the tags become strict IOB2, what the
    head learns to predict.

    Example:
        >>> repair(["O", "I-PER", "I-PER", "I-ORG"])
        (['O', 'B-PER', 'I-PER', 'B-ORG'], 2)
    """
    fixed = list(tags)
    count = 0
    for kind, start, _ in spans(tags):
        if fixed[start] != f"B-{kind}":
            fixed[start] = f"B-{kind}"
            count += 1
    return fixed, count


def tag_names(types):
    """The tag set of `types`: `O`, then `B-` and `I-` of each type in sorted order.

    Example:
        >>> tag_names({"PER"})
        ['O', 'B-PER', 'I-PER']
    """
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in ("B", "I")]


def types_of(tag_names_):
    """The entity types of a tag set, in its order.

    Example:
        >>> types_of(["O", "B-DATE", "I-DATE", "B-PER", "I-PER"])
        ['DATE', 'PER']
    """
    return list(dict.fromkeys(parse_tag(tag)[1] for tag in tag_names_ if tag != OUTSIDE))


def _ratio(numerator, denominator):
    return float(numerator) / float(denominator) if denominator else 0.0


def _f1(precision, recall):
    return _ratio(2.0 * precision * recall, precision + recall)


def entity_report(true_tags, predicted_tags):
    """Entity-level precision, recall and F1 of predicted tag sequences against true ones.

    Micro figures count every entity of every type together (conlleval's overall line);
    macro figures average the per-type figures over the types that occur in the truth or
    in the predictions (seqeval's macro average). A ratio with a zero denominator is 0.0.

    Args:
        true_tags: one tag sequence per sentence.
        predicted_tags: one tag sequence per sentence, each as long as the true one.

    Returns:
        A dict of plain values: `precision`, `recall`, `f1` (micro), `macro_precision`,
        `macro_recall`, `macro_f1`, `num_entities` (true), `num_predicted`, `num_correct`,
        and `per_entity`: `{type: {precision, recall, f1, support, predicted}}`, types in
        sorted order (`support`: true entities of the type).

    Example:
        >>> report = entity_report([["B-PER", "I-PER", "O", "B-ORG"]], [["B-PER", "I-PER", "O", "O"]])
        >>> report["precision"], report["recall"], report["per_entity"]["ORG"]["support"]
        (1.0, 0.5, 1)
    """
    if len(true_tags) != len(predicted_tags):
        raise ValueError(f"{len(true_tags)} true and {len(predicted_tags)} predicted sentences")
    truth, guessed = set(), set()
    for index, (true, predicted) in enumerate(zip(true_tags, predicted_tags)):
        if len(true) != len(predicted):
            raise ValueError(f"sentence {index}: {len(true)} true and {len(predicted)} predicted tags")
        truth.update((index, *entity) for entity in spans(true))
        guessed.update((index, *entity) for entity in spans(predicted))
    correct = truth & guessed
    per_entity = {}
    for kind in sorted({e[1] for e in truth} | {e[1] for e in guessed}):
        support = sum(1 for e in truth if e[1] == kind)
        predicted = sum(1 for e in guessed if e[1] == kind)
        hits = sum(1 for e in correct if e[1] == kind)
        precision, recall = _ratio(hits, predicted), _ratio(hits, support)
        per_entity[kind] = dict(precision=precision, recall=recall, f1=_f1(precision, recall), support=support,
                                predicted=predicted)
    precision, recall = _ratio(len(correct), len(guessed)), _ratio(len(correct), len(truth))
    rows = list(per_entity.values())
    return dict(
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        macro_precision=float(np.mean([r["precision"] for r in rows])) if rows else 0.0,
        macro_recall=float(np.mean([r["recall"] for r in rows])) if rows else 0.0,
        macro_f1=float(np.mean([r["f1"] for r in rows])) if rows else 0.0,
        num_entities=len(truth),
        num_predicted=len(guessed),
        num_correct=len(correct),
        per_entity=per_entity,
    )


def describe(words, tags):
    """The entities of a tagged sentence as text: `Acme Ltd (PARTY); 1 May 2024 (DATE)`,
    or `(none)`.

    Example:
        >>> describe(["Acme", "Ltd", "pays"], ["B-PARTY", "I-PARTY", "O"])
        'Acme Ltd (PARTY)'
    """
    found = [f"{' '.join(words[start:end])} ({kind})" for kind, start, end in spans(tags)]
    return "; ".join(found) or "(none)"
