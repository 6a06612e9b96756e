"""Misclassified validation examples in TensorBoard: the parts every modality shares.

Each modality shows its examples its own way (`Modality.log_misclassified`: images as
images, texts in a table, recordings as clips beside their spectrograms); all of them list
which example was taken for which class with these tables.
"""


def misclassified_header(labels, total):
    """The line above the examples: how many were wrong, how many are shown."""
    return f"{total} misclassified; the first {len(labels)}:\n\n"


def misclassified_table(labels, total):
    """A markdown table of `(index, true_label, predicted_label)` rows under the header."""
    rows = [f"| {index} | {truth} | {guess} |" for index, truth, guess in labels]
    return misclassified_header(labels, total) + "| example | true | predicted |\n|---|---|---|\n" + "\n".join(rows)
