"""The two configurations the engine is judged by, end to end through the public API, against
the independent reference (tests/reference.py): Keras 2 style SGD with `lr=` and `decay=`, and
Adam with amsgrad, global norm clipping and EMA together, over many steps, in float32 (within
two ulps of the float32 emulation of Keras) and float64 (rtol 1e-12)."""

import numpy as np
import pytest

import ferroptim as fo
from reference import assert_close, make_reference

SCENARIOS = [
    ("SGD", dict(lr=0.01, decay=1e-6, momentum=0.9, nesterov=True)),
    ("Adam", dict(amsgrad=True, global_clipnorm=1.0, use_ema=True)),
    ("Adam", dict(amsgrad=True, global_clipnorm=1.0, use_ema=True, ema_overwrite_frequency=3)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", SCENARIOS)
def test_matches_the_reference_over_many_steps(name, kwargs, dtype):
    rng = np.random.default_rng(1234)
    shapes = [(784, 256), (256,), (256, 128), (128,), (128, 10), (10,), ()]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = make_reference(name, kwargs)
    ref.build([p.copy() for p in params])
    opt = getattr(fo.optimizers, name)(**kwargs)
    for step in range(12):
        # Large enough that the global norm exceeds 1 and clipping is active on most steps.
        grads = [(rng.standard_normal(s) * (0.5 + step)).astype(dtype) for s in shapes]
        opt.apply_gradients(zip(grads, params))
        ref.apply([g.copy() for g in grads])
        for got, want in zip(params, ref.params):
            assert_close(got, want, err_msg=f"{name} {kwargs} step {step}")
    for got, want in zip(opt.variables[1:], ref.variables[1:]):
        assert_close(got, want)
    assert opt.iterations == 12
