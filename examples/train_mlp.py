"""A two-layer MLP trained in plain NumPy with ferroptim's Adam.

The task is a synthetic regression (y = sin of a random projection of x): the network has no
framework behind it, only NumPy for the forward and backward passes and one
`apply_gradients` call per step for the update, as a Keras user would write it.

    python examples/train_mlp.py
"""

import numpy as np

import ferroptim as fo


def main(steps: int = 300, batch: int = 128, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = 32, 64, 1
    projection = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)

    params = {
        "dense/kernel": (rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in)).astype(np.float32),
        "dense/bias": np.zeros(n_hidden, np.float32),
        "output/kernel": (rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden)).astype(
            np.float32
        ),
        "output/bias": np.zeros(n_out, np.float32),
    }
    opt = fo.optimizers.AdamW(learning_rate=3e-3, weight_decay=1e-4, global_clipnorm=1.0)
    opt.exclude_from_weight_decay(var_names=["bias"])

    loss = float("nan")
    for step in range(steps):
        x = rng.standard_normal((batch, n_in)).astype(np.float32)
        y = np.sin(x @ projection)
        # Forward.
        h_pre = x @ params["dense/kernel"] + params["dense/bias"]
        h = np.maximum(h_pre, 0.0)
        out = h @ params["output/kernel"] + params["output/bias"]
        err = out - y
        loss = float(np.mean(err**2))
        # Backward (mean squared error).
        d_out = (2.0 / batch) * err
        d_h = (d_out @ params["output/kernel"].T) * (h_pre > 0)
        grads = {
            "dense/kernel": x.T @ d_h,
            "dense/bias": d_h.sum(axis=0),
            "output/kernel": h.T @ d_out,
            "output/bias": d_out.sum(axis=0),
        }
        # One native call updates every parameter in place.
        opt.apply(grads, params)
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss:.5f}")
    return loss


if __name__ == "__main__":
    main()
