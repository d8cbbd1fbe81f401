"""A step is all-or-nothing and never silently corrupts: the cases of the step contract that
are not about bad arrays (those are in test_bad_input.py)."""

import math

import numpy as np

import ferroptim as fo


def test_global_clipnorm_over_dtype_groups_uses_one_float64_scale():
    # A float32 group whose share of the global norm underflows in float32: each call used to
    # derive its clip value from that share and compute 0 * inf = NaN.
    a, b = np.ones(4, np.float32), np.ones(4)
    ga, gb = np.full(4, 1e-30, np.float32), np.full(4, 1e20)
    fo.optimizers.SGD(learning_rate=0.1, global_clipnorm=1.0).apply([ga, gb], [a, b])
    norm = math.sqrt(4 * float(ga[0]) ** 2 + 4 * 1e40)
    scale = 1.0 * min(1.0 / norm, 1.0)
    want_a = np.float32(1) - np.float32(0.1) * (ga * np.float32(scale))
    # Keras holds the learning rate in a float32 variable: float32(0.1) reaches float64 too.
    want_b = 1.0 - float(np.float32(0.1)) * (gb * scale)
    np.testing.assert_array_equal(a, want_a)
    np.testing.assert_array_equal(b, want_b)
    assert np.all(np.isfinite(a))


def test_global_clipnorm_over_dtype_groups_poisons_on_a_non_finite_norm():
    # Keras: `scale + (N - N)` is NaN when the global norm is not finite.
    a, b = np.ones(3, np.float32), np.ones(3)
    fo.optimizers.SGD(learning_rate=0.1, global_clipnorm=1.0).apply(
        [np.full(3, np.inf, np.float32), np.ones(3)], [a, b]
    )
    assert np.all(np.isnan(a)) and np.all(np.isnan(b))


def test_muon_global_clipnorm_across_its_two_paths_stays_finite():
    params = {"k": np.ones((4, 4), np.float32), "bias": np.ones(4, np.float32)}
    grads = {"k": np.full((4, 4), 1e15, np.float32), "bias": np.full(4, 1e-30, np.float32)}
    fo.optimizers.Muon(global_clipnorm=1.0).apply(grads, params)
    assert np.all(np.isfinite(params["bias"])) and np.all(np.isfinite(params["k"]))
    # The bias's clipped gradient is ~1e-47 (0 in float32): AdamW then only decays it.
    assert np.all(params["bias"] <= 1.0) and np.all(params["bias"] > 0.99)
