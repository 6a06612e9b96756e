"""Contract sentences with tagged entities, for token-classification demos and tests offline.

Four entity types, as a contract or a judgment names them:

- `PARTY`: a company (`Northwind Logistics GmbH`) or a person (`Amelia Hart`; a title such
  as `Dr.` before the name is not part of it);
- `DATE`: `12 March 2024`, `March 12, 2024`, `2024-03-12`, `3rd day of June, 2025`, ...;
- `AMOUNT`: a sum with its currency, `EUR 25,000`, `$480,000.00`, `two hundred thousand
  euros`, ...;
- `COURT`: `High Court of Justice`, `Regional Court of Munich`, `Amsterdam District Court`,
  ... (a leading "the" is not part of it).

Each sentence is a contract-like template (a payment, a term, a jurisdiction clause, a
judgment, a signature line) filled with entities; a few templates hold none, and some use
look-alikes that are not entities (`each Party`, `court fees`, `thirty (30) days`). The
templates and the pools of company stems and suffixes, first and last names, kinds of court,
places and courts' own names are split three ways, as the support tickets' phrases are
(`tfft.modalities.text.demo`): some only for training, some only for the test sentences, a
few for both; the date and amount formats are shared, and each split has its own sentences
without entities. Test sentences therefore say the same kinds of things in other words and
name parties and courts the training sentences never show: a tagger must read the context,
not remember names.

Words are split as a WordPiece tokenizer splits text (at whitespace, and every punctuation
mark a word of its own), so each word is one word of the exported model on raw text; the
sets are written in CoNLL's layout (a word and its tag per line).

Example:
    >>> train, test = contract_entity_splits(per_type=10, test_sentences=20)
    >>> train[0]
    (['This', 'Agreement', 'is', 'made', 'on', ...], ['O', 'O', 'O', 'O', 'O', 'B-DATE', ...])
"""

import os
import string
import unicodedata

import numpy as np

from tfft.data import generated
from tfft.data.checks import check_int

ENTITY_TYPES = ("AMOUNT", "COURT", "DATE", "PARTY")
TRAIN_FILE = "contracts_train.conll"
TEST_FILE = "contracts_test.conll"

# Bump when the pools or the assembly change, so older sets are regenerated.
_VERSION = 1

# Slots: {P} a company or a person, {N} a person, {D} a date, {A} an amount, {C} a court
# ({T}, in the sentences without entities, a thing they are about).
_TEMPLATES = [
    "This Agreement is made on {D} between {P} and {P}.",
    "This Contract is entered into as of {D} by and between {P} (the Seller) and {P} (the Buyer).",
    "{P} shall pay to {P} the sum of {A} no later than {D}.",
    "The Purchase Price of {A} shall be paid by {P} in two equal instalments, the first on {D}.",
    "In consideration of {A}, {P} hereby assigns all rights in the Software to {P}.",
    "Any dispute arising out of or in connection with this Agreement shall be submitted to the exclusive "
    "jurisdiction of the {C}.",
    "The parties irrevocably submit to the jurisdiction of the {C} for any claim under this Lease.",
    "By judgment of the {C} dated {D}, {P} was ordered to pay {A} in damages to {P}.",
    "The monthly rent of {A} is due to {P} on the first business day of each month, starting {D}.",
    "{P} agrees to indemnify {P} for losses of up to {A} arising before {D}.",
    "This Lease shall commence on {D} and expire on {D} unless terminated earlier by {P}.",
    "Late payments bear interest at five percent per year on the outstanding {A} from {D} until paid.",
    "The guarantee given by {P} in favour of {P} is limited to {A}.",
    "On {D}, {P} filed a claim against {P} before the {C} seeking {A}.",
    "The deposit of {A} shall be returned to {P} within thirty (30) days after {D}.",
    "Each Party shall bear its own costs, and no court fees shall be recoverable from {P}.",
    "The appeal lodged by {P} was dismissed by the {C} on {D}.",
    "{P}, a company incorporated under the laws of Germany, shall deliver the Goods to {P} by {D}.",
    "Notices to {P} shall be sent to its registered office, for the attention of {N}.",
    "Signed for and on behalf of {P} by {N}, Director, on {D}.",
    "The Service Fee for the Initial Term is {A}, payable in advance by {P}.",
    "Should the {C} find any provision unenforceable, the remaining provisions shall stay in force.",
    "This Amendment, effective {D}, increases the credit facility granted by {P} to {A}.",
    "{N}, acting as guarantor, undertakes to pay {A} to {P} if {P} fails to do so.",
    "The arbitral award of {D} ordering {P} to pay {A} may be enforced before the {C}.",
    "Title to the Equipment passes to {P} upon receipt of {A} on or before {D}.",
    "All amounts are exclusive of VAT, which {P} shall pay at the applicable rate.",
    "The {C} approved the settlement between {P} and {N} on {D}, fixing costs at {A}.",
    "Payment of {A} was received from {P} on {D} in full and final settlement.",
    "{P} waives any objection to proceedings in the {C} on the grounds of venue.",
    "The loan of {A} advanced by {P} to {N} on {D} is repayable on demand.",
    "This Agreement terminates automatically if {P} becomes insolvent before {D}.",
    "{P} acknowledges receipt from {P} of an advance payment of {A}.",
    "The Licence Fee amounts to {A} per year and is invoiced by {P} each January.",
    "Proceedings were commenced by {P} in the {C} on {D}.",
    "{N} signs this Deed on behalf of {P} as its authorised representative.",
    "The Contract Value shall not exceed {A} without a written change order signed by {P}.",
    "Completion shall take place on {D} at the offices of {P}.",
    "The {C} held on {D} that {P} had breached its obligations under the Supply Agreement.",
    "Interest accrues at the statutory rate from {D} on the sum of {A} awarded to {P}.",
    "A retention of {A} may be withheld by {P} until the end of the defects period.",
    "The Employee, {N}, reports to the Managing Director of {P} from {D}.",
    "The exclusive venue for any action under this Note is the {C}.",
    "Confidential Information disclosed by {P} before {D} remains subject to this clause.",
    "In the matter of {P} against {P}, the {C} awarded costs of {A} on {D}.",
    "The Escrow Agent shall release {A} to {P} upon written notice from {N}.",
]

# Sentences without entities, each split's own (shared ones would be the same sentences in
# both splits), with a thing they are about ({T}) for variety.
_PLAIN_TEMPLATES = {
    "train": ["The headings in this Agreement are for convenience only and do not affect {T}.",
              "Neither Party may assign {T} without the prior written consent of the other Party.",
              "Each Party shall keep {T} confidential during the term of this Agreement."],
    "test": ["The Supplier may suspend deliveries of {T} if any invoice remains unpaid for more than sixty days.",
             "Neither the Buyer nor the Seller shall be liable for delays to {T} caused by force majeure.",
             "No amendment to {T} is valid unless made in writing and signed by both Parties."],
}
_THINGS = ["the Goods", "the Services", "the Software", "the Premises", "the Equipment", "any Deliverable",
           "its rights", "this Agreement", "the Licence", "the Works", "the Specification", "the Schedules"]

_STEMS = ["Acme", "Northwind", "Blue Harbor", "Meridian", "Kestrel", "Silverline", "Orion", "Granite Peak",
          "Harborview", "Lumen", "Westbrook", "Cobalt", "Redwood", "Altamira", "Fairmont", "Pinecrest", "Vantage",
          "Sterling & Moore", "Halvorsen", "Bergmann", "Dupont Frères", "Castellano", "Nakamura", "Okafor",
          "Lindqvist", "Rossi", "Van Dijk", "Kowalski", "Haddad", "Moreau", "Brightwater", "Ironbridge"]
_SUFFIXES = ["Ltd", "GmbH", "Inc.", "Holdings Ltd", "LLC", "S.A.", "plc", "Capital Partners LLP", "Logistics GmbH",
             "B.V.", "Software Inc.", "S.p.A.", "Trading Co.", "AG", "Limited", "Industries Corp."]
_FIRST = ["Maria", "John", "Amelia", "Kenji", "Fatima", "Lukas", "Chloé", "Rahul", "Ingrid", "Tomasz", "Aisha",
          "Pedro", "Hannah", "Olusegun", "Mei", "Sven", "Elena", "David", "Priya", "Mateo"]
_LAST = ["Schneider", "O'Neil", "Hart", "Tanaka", "Becker", "Dubois", "Sharma", "Larsen", "Nowak", "Bello",
         "Costa", "Fischer", "Adeyemi", "Chen", "Holm", "García-López", "Novak", "Kim", "Moretti", "Walsh"]
_TITLES = ["Dr.", "Prof."]
# A court is a kind of court and a place in one of a few shapes (the shapes shared, kinds
# and places split), or one of a few names of their own (split).
_COURT_KINDS = ["District", "Regional", "Commercial", "Supreme", "Superior", "Labour", "Administrative", "County",
                "Federal", "High", "Civil", "Appellate", "Provincial", "Circuit", "Tax"]
_PLACES = ["Amsterdam", "Munich", "Paris", "Vienna", "Milan", "Hamburg", "Brussels", "Zurich", "Madrid", "Lisbon",
           "Dublin", "Oslo", "New York", "California", "Ontario", "Singapore", "Stockholm", "Prague", "Geneva",
           "Rotterdam", "Frankfurt am Main", "Texas", "Copenhagen", "Warsaw", "Lyon"]
_COURT_SHAPES = ["{k} Court of {p}", "{p} {k} Court", "{k} Court for the District of {p}", "{k} Court in {p}",
                 "Court of Appeal of {p}"]
_COURT_NAMES = ["High Court of Justice", "Court of Session", "Federal Court of Justice", "Court of Cassation",
                "Supreme Court of Canada", "International Court of Arbitration", "Court of Appeal of England and Wales",
                "Singapore International Commercial Court"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_DATE_FORMATS = ["{d} {M} {y}", "{d} {M}, {y}", "{y}-{m:02d}-{d:02d}", "{d:02d}/{m:02d}/{y}", "{d}.{m}.{y}",
                 "{o} day of {M}, {y}", "{o} of {M} {y}", "{M} {o}, {y}", "{M} {d}, {y}", "{m:02d}/{d:02d}/{y}"]
_AMOUNT_FORMATS = ["EUR {n}", "USD {n}", "${n}", "£{n}", "€{c}", "{n} euros", "{n} US dollars", "{w} euros",
                   "CHF {c}", "GBP {n}", "US$ {n}", "JPY {n}", "EUR {c}", "{w} pounds sterling", "{n} Swiss francs"]
_WORDS = ["two hundred thousand", "fifty thousand", "one million", "seventy-five thousand", "ten thousand",
          "three hundred thousand"]


def _split_pool(items, split):
    """The items of a pool the `"train"` or `"test"` split may use: positions 0, 3, 5, 8,
    ... for training only, 1, 4, 6, 9, ... for the test only, 2, 7, ... for both."""
    role = {0: "train", 1: "test", 2: "both", 3: "train", 4: "test"}
    return [item for i, item in enumerate(items) if role[i % 5] in (split, "both")]


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _ordinal(day):
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _person(rng, split, titled=True):
    """`(prefix, name)`: an optional title (not part of the entity) and the name."""
    name = f"{_pick(rng, _split_pool(_FIRST, split))} {_pick(rng, _split_pool(_LAST, split))}"
    return (_pick(rng, _TITLES) + " " if titled and rng.random() < 0.3 else ""), name


def _value(slot, rng, split):
    """`(prefix, entity text, type)` for one slot. Names of parties and courts (the kinds
    of court and their places) differ between the splits; date and amount formats, and the
    shapes of a court's name, are shared, as the words around them are not."""
    if slot == "N" or (slot == "P" and rng.random() < 0.3):
        return (*_person(rng, split), "PARTY")
    if slot == "P":
        return "", f"{_pick(rng, _split_pool(_STEMS, split))} {_pick(rng, _split_pool(_SUFFIXES, split))}", "PARTY"
    if slot == "T":
        return "", _pick(rng, _THINGS), None
    if slot == "D":
        day, month, year = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(2019, 2031))
        text = _pick(rng, _DATE_FORMATS).format(
            d=day, m=month, y=year, M=_MONTHS[month - 1], o=_ordinal(day))
        return "", text, "DATE"
    if slot == "A":
        number = int(rng.choice([5, 10, 12, 25, 40, 75, 120, 250, 480, 1200])) * 1000 + int(rng.integers(0, 4)) * 500
        text = _pick(rng, _AMOUNT_FORMATS).format(
            n=f"{number:,}", c=f"{number:,}.{int(rng.integers(0, 100)):02d}", w=_pick(rng, _WORDS))
        return "", text, "AMOUNT"
    if rng.random() < 0.2:
        return "", _pick(rng, _split_pool(_COURT_NAMES, split)), "COURT"
    shape = _pick(rng, _COURT_SHAPES)
    kind, place = _pick(rng, _split_pool(_COURT_KINDS, split)), _pick(rng, _split_pool(_PLACES, split))
    return "", shape.format(k=kind, p=place), "COURT"


def is_punctuation(character):
    """Whether a WordPiece tokenizer splits `character` off as a word of its own: ASCII
    characters that are neither letters nor digits, and Unicode punctuation.

    Example:
        >>> is_punctuation("$"), is_punctuation("€"), is_punctuation("«")
        (True, False, True)
    """
    code = ord(character)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(character).startswith("P")


def words_of(text):
    """`(word, start, end)` of each word of `text`, split as a WordPiece tokenizer splits it.

    Example:
        >>> [w for w, _, _ in words_of("pay $480,000.")]
        ['pay', '$', '480', ',', '000', '.']
    """
    found, start = [], None
    for i, character in enumerate(text + " "):
        control = unicodedata.category(character) in ("Cc", "Cf")
        if character.isspace() or control or is_punctuation(character):
            if start is not None:
                found.append((text[start:i], start, i))
                start = None
            if is_punctuation(character):
                found.append((character, i, i + 1))
        elif start is None:
            start = i
    return found


def _sentence(template, rng, split):
    """One tagged sentence from `template`: `(words, tags)`."""
    parts, entities = [], []
    length = 0
    for literal, slot, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        length += len(literal)
        if slot:
            prefix, text, kind = _value(slot, rng, split)
            parts.append(prefix + text)
            if kind is not None:
                entities.append((length + len(prefix), length + len(prefix) + len(text), kind))
            length += len(prefix) + len(text)
    text = "".join(parts)
    if rng.random() < 0.08 and len(text.upper()) == len(text):
        text = text.upper()  # the capitals of a recital or a signature block
    words, tags = [], []
    for word, start, end in words_of(text):
        inside = [(first, kind) for first, last, kind in entities if first <= start and end <= last]
        if inside:
            first, kind = inside[0]
            tags.append(("B-" if first == start else "I-") + kind)
        else:
            tags.append("O")
        words.append(word)
    return words, tags


# Slot letter -> the entity type it holds.
_SLOT_TYPES = {"P": "PARTY", "N": "PARTY", "D": "DATE", "A": "AMOUNT", "C": "COURT"}
# Share of sentences drawn from the templates without entities.
_PLAIN = 0.1


def _sentences(split, count, seed):
    """`count` sentences: the entity types take turns, each drawing a template that holds
    it, and about one sentence in ten comes from a template without entities."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    templates = _split_pool(_TEMPLATES, split)
    holding = {kind: [t for t in templates if kind in {_SLOT_TYPES[slot] for _, slot, _, _ in
                                                       string.Formatter().parse(t) if slot}]
               for kind in ENTITY_TYPES}
    plain = _PLAIN_TEMPLATES[split]
    sentences = []
    for i in range(count):
        pool = plain if rng.random() < _PLAIN else holding[ENTITY_TYPES[i % len(ENTITY_TYPES)]]
        sentences.append(_sentence(_pick(rng, pool), rng, split))
    return sentences


def contract_entity_splits(per_type=75, test_sentences=300, seed=0):
    """The training and test sentences in memory: two lists of `(words, tags)`.

    Args:
        per_type: the training split holds `4 * per_type` sentences, drawn type after type
            from the templates that hold it: each type is in `per_type` of them at least
            (about nine in ten; the others hold no entity), most hold several entities.
        test_sentences: sentences of the test split.
        seed: seed of the draws.

    Example:
        >>> train, test = contract_entity_splits(per_type=10, test_sentences=40)
        >>> len(train), len(test)
        (40, 40)
    """
    per_type = check_int("per_type", per_type, 1)
    test_sentences = check_int("test_sentences", test_sentences, 1)
    return (_sentences("train", per_type * len(ENTITY_TYPES), seed), _sentences("test", test_sentences, seed))


def _write_conll(path, sentences):
    def write(f):
        f.write("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(words, tags)) for words, tags in sentences) + "\n")

    generated.replace_file(path, write)


def make_contract_entities(directory=None, per_type=75, seed=0, test_sentences=300):
    """Write the contract sentences as `contracts_train.conll` and `contracts_test.conll`.

    Written once: a folder that already holds a set made with the same parameters is
    returned as it is.

    Args:
        directory: the folder (default: a new temporary folder).
        per_type: training sentences per entity type (see `contract_entity_splits`).
        seed: seed of the draws.
        test_sentences: sentences of the test split.

    Returns:
        The folder.

    Example:
        >>> folder = make_contract_entities("/tmp/contracts", per_type=10)
        >>> sorted(os.listdir(folder))
        ['contracts_test.conll', 'contracts_train.conll']
    """
    import tempfile

    directory = directory or tempfile.mkdtemp(prefix="contract_entities_")
    params = dict(version=_VERSION, per_type=per_type, seed=seed, test_sentences=test_sentences)
    if generated.is_current(directory, params):
        return directory
    generated.check_folder(directory, "the contract sentences", "a contract sentence set")
    train, test = contract_entity_splits(per_type, test_sentences, seed)

    def write(staging):
        _write_conll(os.path.join(staging, TRAIN_FILE), train)
        _write_conll(os.path.join(staging, TEST_FILE), test)

    generated.write_folder(directory, params, write)
    return directory
