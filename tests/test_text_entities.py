"""IOB2 entities and their scores, on cases worked out by hand with conlleval's rules."""

import pytest

from tfft.errors import DataError
from tfft.modalities.text.entities import check_tags, describe, entity_report, parse_tag, repair, spans, tag_names


@pytest.mark.parametrize("tags, expected", [
    (["B-PER", "I-PER", "O", "B-ORG"], [("PER", 0, 2), ("ORG", 3, 4)]),
    # A broken start: an I- after O begins an entity (IOB1 files write every entity so).
    (["O", "I-PER", "I-PER", "O"], [("PER", 1, 3)]),
    (["I-LOC"], [("LOC", 0, 1)]),
    # An I- of another type ends the entity and starts one of its own type.
    (["B-PER", "I-ORG", "I-ORG"], [("PER", 0, 1), ("ORG", 1, 3)]),
    # B- always starts a new entity, even of the same type.
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
    (["B-PER", "O", "I-PER"], [("PER", 0, 1), ("PER", 2, 3)]),
    (["O", "O"], []),
    ([], []),
])
def test_spans_follow_conlleval(tags, expected):
    assert spans(tags) == expected


def test_repair_writes_broken_starts_as_b_and_keeps_the_entities():
    tags = ["I-PER", "I-PER", "O", "I-ORG", "B-ORG", "I-LOC"]
    fixed, count = repair(tags)
    assert fixed == ["B-PER", "I-PER", "O", "B-ORG", "B-ORG", "B-LOC"]
    assert count == 3
    assert spans(fixed) == spans(tags)
    assert repair(fixed) == (fixed, 0)


def test_entity_report_by_hand():
    true = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-LOC", "O", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG", "I-ORG"], ["I-LOC", "O", "B-PER"]]
    # True: PER 0-2, ORG 3-4 | LOC 0-1. Predicted: PER 0-2, ORG 3-5 (one word too long) |
    # LOC 0-1 (a broken start, still the right entity), PER 2-3. Right: PER 0-2 and LOC 0-1.
    report = entity_report(true, predicted)
    assert (report["num_entities"], report["num_predicted"], report["num_correct"]) == (3, 4, 2)
    assert report["precision"] == pytest.approx(2 / 4)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert list(report["per_entity"]) == ["LOC", "ORG", "PER"]
    assert report["per_entity"]["PER"] == dict(precision=0.5, recall=1.0, f1=pytest.approx(2 / 3), support=1,
                                               predicted=2)
    assert report["per_entity"]["ORG"] == dict(precision=0.0, recall=0.0, f1=0.0, support=1, predicted=1)
    assert report["per_entity"]["LOC"]["f1"] == 1.0
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.0 + 1.0) / 3)
    assert report["macro_precision"] == pytest.approx(0.5)
    assert report["macro_recall"] == pytest.approx(2 / 3)


def test_entity_report_counts_types_of_the_truth_or_the_predictions_and_zero_denominators():
    report = entity_report([["O", "O"]], [["B-DATE", "O"]])
    assert report["per_entity"] == {"DATE": dict(precision=0.0, recall=0.0, f1=0.0, support=0, predicted=1)}
    assert (report["precision"], report["recall"], report["f1"]) == (0.0, 0.0, 0.0)
    empty = entity_report([["O"]], [["O"]])
    assert empty["per_entity"] == {} and empty["macro_f1"] == 0.0 and empty["f1"] == 0.0
    with pytest.raises(ValueError, match="sentence 0: 2 true and 1 predicted tags"):
        entity_report([["O", "O"]], [["O"]])


@pytest.mark.parametrize("tag", ["E-PER", "S-PER", "PER", "B-", "b-PER", "B-PER ", "", "B_PER"])
def test_only_iob2_tags_are_read(tag):
    with pytest.raises(ValueError, match="is not an IOB2 tag"):
        parse_tag(tag)
    with pytest.raises(DataError) as error:
        check_tags(["O", tag], "train.conll, line 7")
    assert str(error.value).startswith(f"train.conll, line 7: '{tag}' is not an IOB2 tag: O, B-TYPE or I-TYPE")
    assert str(error.value).endswith(f"Received: tag={tag!r}")


def test_tag_names_and_describe():
    assert tag_names({"PARTY", "DATE"}) == ["O", "B-DATE", "I-DATE", "B-PARTY", "I-PARTY"]
    assert describe(["Acme", "Ltd", "pays", "on", "1", "May"], ["B-PARTY", "I-PARTY", "O", "O", "B-DATE", "I-DATE"]) \
        == "Acme Ltd (PARTY); 1 May (DATE)"
    assert describe(["nothing"], ["O"]) == "(none)"
