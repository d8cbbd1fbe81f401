"""What a refused call must leave as it was, copied before the call."""

import numpy as np


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


class Snapshot:
    """Copies of everything a call could change; `check()` asserts nothing did, bit for bit
    (a NaN stays the same NaN, -0.0 stays -0.0).

    Args:
        opt: the optimizer (its `variables` and `iterations` are copied).
        params: the arrays the call could write (a list or a dict), the parameters and any
            other array the call sees (a gradient passed where a variable belongs).
    """

    def __init__(self, opt, params):
        self.opt = opt
        self.params = list(params.values()) if isinstance(params, dict) else list(params)
        self.values = [p.copy() for p in self.params]
        self.variables = [np.array(v, copy=True) for v in opt.variables]
        self.iterations = int(opt.iterations)

    def check(self):
        for i, (p, before) in enumerate(zip(self.params, self.values)):
            assert _same_bits(p, before), f"parameter {i} changed"
        variables = [np.asarray(v) for v in self.opt.variables]
        assert len(variables) == len(self.variables), "the optimizer's variables changed"
        for i, (v, before) in enumerate(zip(variables, self.variables)):
            assert _same_bits(v, before), f"optimizer variable {i} changed"
        assert int(self.opt.iterations) == self.iterations, "iterations changed"
