"""Errors that tfft raises for user mistakes.

Every error a user can cause (a wrong recipe key, an unknown layer group, an empty data
folder, a corrupt image) is a `TfftError`. The CLI prints its message as one line and exits
with code 2; anything else is a bug and keeps its traceback.
"""


class TfftError(ValueError):
    """A user mistake that tfft can explain in one line."""


class RecipeError(TfftError):
    """A recipe file or a `--set` override is wrong."""


class DataError(TfftError):
    """The data cannot be read, split or decoded."""


class BackboneError(TfftError):
    """A backbone or its weights cannot be resolved."""


class GroupError(TfftError):
    """Layer groups are unknown or split a block."""
