"""In-memory copies of a model's weights and its optimizer's state, to go back to.

The learning-rate finder trains for a while and must leave no trace; a stage that collapses
is rolled back to where it started. Both take a `Snapshot` first and restore it after.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Snapshot:
    """Every weight of a model (BatchNorm statistics included) and every optimizer variable.

    Example:
        >>> snapshot = Snapshot.take(model, optimizer)
        >>> model.fit(...)                  # anything
        >>> snapshot.restore(model, optimizer)
    """

    weights: list
    optimizer: dict

    @classmethod
    def take(cls, model, optimizer):
        # `np.array` copies: a numpy view of a variable would follow it as it trains.
        return cls([np.array(v) for v in model.weights], {v.path: np.array(v) for v in optimizer.variables})

    def restore(self, model, optimizer, keep_step=False):
        """Put every value back; with `keep_step`, the optimizer's step counter keeps going
        (so the TensorBoard step axis and the data position never run backwards)."""
        for variable, value in zip(model.weights, self.weights):
            variable.assign(value)
        iterations = optimizer.iterations
        for variable in optimizer.variables:
            if keep_step and variable is iterations:
                continue
            variable.assign(self.optimizer[variable.path])
