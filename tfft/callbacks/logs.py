"""Reading the values of Keras logs, which may be tensors, numpy values or anything else."""

import numpy as np


def scalar_or_none(value):
    """`value` as a float if it is a numeric scalar (Python, numpy or tensor), else None.

    Example:
        >>> scalar_or_none(np.float32(0.5)), scalar_or_none([1, 2]), scalar_or_none(None)
        (0.5, None, None)
    """
    if value is None:
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if array.ndim != 0 or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array)
