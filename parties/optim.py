"""Local weight updates: SGD, momentum and Adam, with L2 (and optional L1) penalties.

Each party updates only its own weights from its own decoded gradient (mode ``local``).
The intercept (the bank's last weight) is never penalized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from federation.protocol.messages import Optimizer

Float = npt.NDArray[np.float64]


@dataclass
class OptimizerState:
    kind: Optimizer
    learning_rate: float
    l2: float = 0.0
    l1: float = 0.0
    momentum: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    penalized: Float | None = None  # 1.0 where a weight is penalized, 0.0 for the intercept
    step_count: int = 0
    velocity: Float | None = field(default=None, repr=False)
    second: Float | None = field(default=None, repr=False)

    def step(self, theta: Float, grad: Float) -> Float:
        """Return the updated weights for the data gradient ``grad``."""
        mask = self.penalized if self.penalized is not None else np.ones_like(theta)
        g = grad + mask * (self.l2 * theta + self.l1 * np.sign(theta))
        self.step_count += 1
        if self.kind is Optimizer.SGD:
            return theta - self.learning_rate * g
        if self.velocity is None:
            self.velocity = np.zeros_like(theta)
        if self.kind is Optimizer.MOMENTUM:
            self.velocity = self.momentum * self.velocity + g
            return theta - self.learning_rate * self.velocity
        if self.second is None:
            self.second = np.zeros_like(theta)
        self.velocity = self.momentum * self.velocity + (1 - self.momentum) * g
        self.second = self.beta2 * self.second + (1 - self.beta2) * g * g
        v_hat = self.velocity / (1 - self.momentum**self.step_count)
        s_hat = self.second / (1 - self.beta2**self.step_count)
        return theta - self.learning_rate * v_hat / (np.sqrt(s_hat) + self.eps)
