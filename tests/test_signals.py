"""A step is one transaction under Ctrl-C: a SIGINT that lands anywhere in a step (most often
while a large kernel runs with the GIL released, so `KeyboardInterrupt` is raised the moment it
returns) leaves either the whole step applied, `iterations` included, or nothing of it.

Each trial runs a child process that steps in a loop until the parent interrupts it; the child
then replays as many steps as `iterations` says on fresh copies and compares every parameter
and optimizer variable bit for bit.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import ferroptim as fo

    case = sys.argv[1]
    n = 1_500_000

    def setup():
        rng = np.random.default_rng(0)
        if case == "adam":
            params = [np.ones(n, np.float32)]
            opt = fo.optimizers.Adam(learning_rate=0.01)
        elif case == "nadam_two_dtypes_ema":
            params = [np.ones(n, np.float32), np.ones(n // 2)]
            opt = fo.optimizers.Nadam(learning_rate=0.01, use_ema=True)
        elif case == "sgd_accumulation_missing":
            params = [np.ones(n, np.float32), np.ones(n, np.float32), np.ones(n // 2)]
            opt = fo.optimizers.SGD(learning_rate=0.01, momentum=0.9, use_ema=True,
                                    gradient_accumulation_steps=2)
        elif case == "adafactor":
            params = [np.ones((1000, n // 1000), np.float32)]
            opt = fo.optimizers.Adafactor(learning_rate=0.01)
        elif case == "multi_optimizer":
            params = {"kernel": np.ones(n, np.float32), "bias": np.ones(n // 2)}
            opt = fo.optimizers.MultiOptimizer(fo.optimizers.OptimizerMap(
                fo.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                {"bias": fo.optimizers.Adam(learning_rate=0.01)}))
        elif case == "loss_scale":
            params = [np.ones(n, np.float32), np.ones(n // 2)]
            opt = fo.optimizers.LossScaleOptimizer(fo.optimizers.Adam(learning_rate=0.01),
                                                   dynamic_growth_steps=3)
        else:
            raise SystemExit("unknown case " + case)
        if isinstance(params, dict):
            grads = {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
            return params, grads, opt
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        return params, grads, opt

    def step(opt, params, grads, i):
        if case == "sgd_accumulation_missing" and i % 3 == 1:
            # A variable without gradient: EMA and accumulator reset through their own calls.
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt.apply([grads[0], None, grads[2]], params)
        else:
            opt.apply(grads, params)

    params, grads, opt = setup()
    step(opt, params, grads, 0)
    print("ready", flush=True)
    raw = 1
    try:
        while True:
            step(opt, params, grads, raw)
            raw += 1
    except KeyboardInterrupt:
        pass
    # The raw step count (`iterations` divides it under accumulation); a LossScaleOptimizer
    # counts its steps in its inner optimizer.
    done = getattr(opt, "inner_optimizer", opt)._iterations
    fresh_params, _, fresh = setup()
    for i in range(done):
        step(fresh, fresh_params, grads, i)
    if isinstance(params, dict):
        params, fresh_params = list(params.values()), list(fresh_params.values())
    same = all(np.array_equal(a, b) for a, b in zip(params, fresh_params)) and all(
        np.array_equal(a, b) for a, b in zip(opt.variables, fresh.variables))
    print("steps", done, "loop", raw, "consistent", same, flush=True)
    """
)


@pytest.mark.parametrize(
    "case",
    [
        "adam",
        "nadam_two_dtypes_ema",
        "sgd_accumulation_missing",
        "adafactor",
        "multi_optimizer",
        "loss_scale",
    ],
)
def test_sigint_leaves_whole_steps(case, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, FERROPTIM_NUM_THREADS="2")
    rng = np.random.default_rng(sum(map(ord, case)))
    for trial in range(3):
        child = subprocess.Popen(
            [sys.executable, str(script), case],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
            time.sleep(float(rng.uniform(0.05, 0.25)))
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == 0, err
        assert "consistent True" in out, f"trial {trial}: {out}{err}"
