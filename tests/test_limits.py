"""Limits: a parameter of more than 2**31 elements is updated correctly end to end.

The parameter is a float32 `numpy.memmap` of 2**31 + 7 elements (8 GiB) in a temporary
directory. Two steps take the two paths of the driver over it, every element checked after
each: a read-only broadcast gradient (zero strides: no second 8 GiB array, and the strided
path with its element offsets) and a contiguous gradient (a second, sparse memmap file: the
flat path). A 32-bit index or length anywhere would wrap and update elements near the start
twice and those past 2**31 never.

Slow (minutes, 8 GiB of disk, as much page cache as it can get): excluded from the default run;
`python -m pytest -m slow` runs it.
"""

import numpy as np
import pytest

import ferroptim as fo

N = 2**31 + 7
CHUNK = 2**27  # elements read at a time when checking


def _assert_all_equal(array, value, what):
    for start in range(0, N, CHUNK):
        block = np.asarray(array[start : start + CHUNK])
        wrong = np.flatnonzero(block != value)
        assert wrong.size == 0, (
            f"{what}: element {start + int(wrong[0])} is {block[wrong[0]]}, expected {value}"
        )


@pytest.mark.slow
def test_a_parameter_of_more_than_2_31_elements_is_updated_everywhere(tmp_path):
    param = np.memmap(tmp_path / "param.f32", dtype=np.float32, mode="w+", shape=(N,))
    assert param.size > 2**31 and param[0] == 0 and param[-1] == 0  # a new file reads as zeros
    probes = [0, 1, 2**31 - 2, 2**31 - 1, 2**31, 2**31 + 1, N - 1]

    # Step 1, strided path: w = 0 - 0.5 * 1.
    ones = np.broadcast_to(np.float32(1.0), (N,))
    assert ones.strides == (0,) and not ones.flags.writeable
    fo.optimizers.SGD(learning_rate=0.5).apply_gradients([(ones, param)])
    assert param[probes].tolist() == [-0.5] * len(probes)
    _assert_all_equal(param, np.float32(-0.5), "after the strided step")

    # Step 2, flat path: a contiguous zero gradient with weight decay, w = w - w * 0.5 * 0.5.
    zeros = np.memmap(tmp_path / "grad.f32", dtype=np.float32, mode="w+", shape=(N,))
    assert zeros.flags.c_contiguous
    fo.optimizers.SGD(learning_rate=0.5, weight_decay=0.5).apply_gradients([(zeros, param)])
    assert param[probes].tolist() == [-0.375] * len(probes)
    _assert_all_equal(param, np.float32(-0.375), "after the contiguous step")

    param.flush()
    del param, zeros
