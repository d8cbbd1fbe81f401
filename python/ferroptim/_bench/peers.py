"""Peers: the contestants of a case (ferroptim, its roofline, NumPy, NumPy with `out=`,
torch), each built over the case's arrays as a `Peer` to time.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ferroptim._bench.cases import DTYPE, Arrays
from ferroptim._bench.registry import BenchOptimizer
from ferroptim._bench.timing import Peer

# The peers of the main table, in the order their blocks alternate, and their names in the
# report's tables.
MAIN_PEERS = ("ferroptim", "roofline", "numpy", "numpy_out", "torch")
PEER_TITLES = {
    "ferroptim": "ferroptim",
    "roofline": "roofline",
    "numpy": "NumPy",
    "numpy_out": "NumPy out=",
    "torch": "torch",
}


class Unavailable(Exception):
    """A peer that cannot run here (e.g. torch is not installed); the message says why."""


def build_peers(
    builders: Mapping[str, Callable[[], Peer]], order: Sequence[str]
) -> Tuple[List[Peer], Dict[str, str]]:
    """The peers that can run here, in `order`, and why the others cannot.

    Args:
        builders: peer name -> a function building it, which raises Unavailable (saying why)
            when it cannot run here.
        order: the names of the peers to build, in the order their blocks alternate.
    """
    peers: List[Peer] = []
    unavailable: Dict[str, str] = {}
    for name in order:
        try:
            peers.append(builders[name]())
        except Unavailable as reason:
            unavailable[name] = str(reason)
    return peers, unavailable


def set_threads(n: int) -> None:
    """Set ferroptim's thread count (`ferroptim.set_num_threads`).

    Args:
        n: the thread count.
    """
    import ferroptim

    ferroptim.set_num_threads(n)


def import_torch() -> Any:
    """The torch module; Unavailable, saying why, when it does not import."""
    try:
        # By name: torch is optional, and has no stubs where it is not installed.
        return importlib.import_module("torch")
    except ImportError:
        raise Unavailable("not installed, `pip install torch` to compare") from None


def with_threads(peer: Peer, threads: int) -> Peer:
    """`peer` named `<name>@<threads>`, setting ferroptim's thread count before every block
    (for thread-scaling comparisons).

    Args:
        peer: a peer of ferroptim's native code.
        threads: the thread count.
    """
    return dataclasses.replace(
        peer, name=f"{peer.name}@{threads}", setup=lambda: set_threads(threads)
    )


def ferroptim_peer(
    spec: BenchOptimizer, params: Arrays, grads: Arrays, names: Optional[Sequence[str]] = None
) -> Peer:
    """ferroptim through its public API: `opt.apply_gradients(zip(grads, params))`.

    Args:
        spec: the optimizer.
        params, grads: the case's arrays (params are updated in place).
        names: the parameters' names, which the optimizer is built with when given.
    """
    import ferroptim

    optimizer = getattr(ferroptim.optimizers, spec.keras_name)(**spec.kwargs)
    if names is not None:
        optimizer.build(dict(zip(names, params)))

    def step() -> None:
        optimizer.apply_gradients(zip(grads, params))

    return Peer("ferroptim", step)


def roofline_peer(spec: BenchOptimizer, params: Arrays, grads: Arrays) -> Peer:
    """The native streaming floor: the same streams as the optimizer's step.

    Args:
        spec: the optimizer whose slot count sets the streams (an element-wise one).
        params, grads: the case's arrays.
    """
    from ferroptim import _native

    if not spec.element_wise:
        raise Unavailable(
            f"{spec.keras_name} is not element-wise: its step is not one pass "
            "over memory, so it has no streaming floor"
        )

    slots = spec.make_slots(params)

    def step() -> None:
        _native.roofline(params, grads, slots)

    return Peer("roofline", step)


def numpy_peer(
    spec: BenchOptimizer,
    params: Arrays,
    grads: Arrays,
    names: Optional[Sequence[str]] = None,
    out: bool = False,
) -> Peer:
    """NumPy as a user writes it (`spec.numpy_step`), or with `out=` and preallocated scratch
    (`spec.numpy_out_step`), with its own state.

    Args:
        spec: the optimizer.
        params, grads: the case's arrays.
        names: the parameters' names, or None.
        out: the `out=` step ("numpy_out") rather than the plain one ("numpy").
    """
    numpy_step = spec.numpy_step
    if numpy_step is None:
        raise Unavailable(f"no NumPy step for {spec.name}")
    if out and spec.numpy_out_step is None:
        raise Unavailable(f"no NumPy out= step for {spec.name}")
    slots = spec.make_numpy_state(params, names)
    counter = itertools.count()
    if out and spec.numpy_out_step is not None:
        out_step, scratch = spec.numpy_out_step, make_scratch(spec, params)

        def step_out() -> None:
            out_step(params, grads, slots, scratch, next(counter), **spec.kwargs)

        return Peer("numpy_out", step_out)

    def step() -> None:
        numpy_step(params, grads, slots, next(counter), **spec.kwargs)

    return Peer("numpy", step)


def make_scratch(spec: BenchOptimizer, params: Arrays) -> List[Arrays]:
    """Scratch for `spec.numpy_out_step`: views of a few flat buffers sized to the largest
    parameter (a careful user reuses one buffer rather than holding one per tensor).

    Args:
        spec: the optimizer (its `scratch_per_tensor`).
        params: the parameters; every view has its parameter's shape.
    """
    largest = max((p.size for p in params), default=0)
    buffers = [np.empty(largest, dtype=DTYPE) for _ in range(spec.scratch_per_tensor)]
    return [[buffer[: p.size].reshape(p.shape) for buffer in buffers] for p in params]


def torch_peer(spec: BenchOptimizer, params: Arrays, grads: Arrays, threads: int) -> Peer:
    """torch.optim on CPU, over the same memory as the other peers (`torch.from_numpy`).

    `fused=True` (a single multi-tensor CPU kernel, torch >= 2.4) when this torch accepts it,
    else torch's default implementation, labelled as such.

    Args:
        spec: the optimizer.
        params, grads: the case's arrays; the tensors share their memory.
        threads: torch's intra-op thread count for the run.
    """
    torch = import_torch()
    if spec.torch_optimizer is None:
        raise Unavailable(f"torch has no fused CPU {spec.keras_name}")
    torch.set_num_threads(threads)
    tensors = []
    for p, g in zip(params, grads):
        tensor = torch.from_numpy(p)
        tensor.requires_grad_(True)
        tensor.grad = torch.from_numpy(g)
        tensors.append(tensor)
    try:
        optimizer = spec.torch_optimizer(torch, tensors, {"fused": True}, **spec.kwargs)
        label = "torch fused"
    except (RuntimeError, TypeError, ValueError):
        # An older torch: no CPU fused kernel, or no `fused` argument for this optimizer.
        optimizer = spec.torch_optimizer(torch, tensors, {}, **spec.kwargs)
        label = "torch (not fused)"
    label += f" {torch.__version__}"

    def step() -> None:
        optimizer.step()

    return Peer("torch", step, lambda: torch.set_num_threads(threads), label)
