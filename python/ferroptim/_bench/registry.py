"""The optimizers the benchmark covers: `OPTIMIZERS`, one `BenchOptimizer` record each.

A registered element-wise optimizer is benchmarked without a record here: `_from_class` derives
one from the class (its defaults and slots), with ferroptim and the roofline as its peers. A
record adds what cannot be derived: its NumPy steps (`numpy_steps`, `numpy_adam_steps`,
`numpy_matrix_steps`), a torch factory when torch has a fused CPU kernel for it, the state of an
optimizer that is not element-wise. tests/test_bench.py checks that the NumPy steps agree with
ferroptim and that every registered optimizer class is benchmarked.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ferroptim._bench.cases import DTYPE, Arrays
from ferroptim._bench.numpy_adam_steps import (
    adam_numpy,
    adam_numpy_out,
    adamax_numpy,
    adamax_numpy_out,
    lamb_numpy,
    lamb_numpy_out,
    nadam_numpy,
    nadam_numpy_out,
    schedule_free_adamw_numpy,
    schedule_free_adamw_numpy_out,
)
from ferroptim._bench.numpy_matrix_steps import (
    adafactor_numpy,
    adafactor_numpy_out,
    adafactor_state,
    muon_numpy,
    muon_numpy_out,
    muon_state,
)
from ferroptim._bench.numpy_steps import (
    adadelta_numpy,
    adadelta_numpy_out,
    adagrad_numpy,
    adagrad_numpy_out,
    ftrl_numpy,
    ftrl_numpy_out,
    lion_numpy,
    lion_numpy_out,
    rmsprop_numpy,
    rmsprop_numpy_out,
    sgd_numpy,
    sgd_numpy_out,
)


def _sgd_torch(
    torch: Any,
    tensors: list,
    implementation: Mapping[str, Any],
    *,
    learning_rate: float,
    momentum: float,
) -> Any:
    # torch keeps `buf = momentum * buf + g; p -= lr * buf`: the same streams as Keras's form.
    return torch.optim.SGD(tensors, lr=learning_rate, momentum=momentum, **implementation)


def _adam_torch(
    torch: Any,
    tensors: list,
    implementation: Mapping[str, Any],
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
) -> Any:
    # torch adds eps to the bias-corrected sqrt(v) where Keras adds it to the raw one: the
    # numbers differ slightly, the work per element does not.
    return torch.optim.Adam(
        tensors, lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon, **implementation
    )


def _adagrad_torch(
    torch: Any,
    tensors: list,
    implementation: Mapping[str, Any],
    *,
    learning_rate: float,
    initial_accumulator_value: float,
    epsilon: float,
) -> Any:
    # torch adds eps to sqrt(accumulator) where Keras adds it inside the square root: the
    # numbers differ slightly, the work per element does not.
    return torch.optim.Adagrad(
        tensors,
        lr=learning_rate,
        initial_accumulator_value=initial_accumulator_value,
        eps=epsilon,
        **implementation,
    )


# A slot initial value: a copy of the parameter (ScheduleFreeAdamW's z) rather than a constant.
PARAMETER_COPY = "parameter"


@dataclasses.dataclass(frozen=True)
class BenchOptimizer:
    """One optimizer as every peer runs it.

    Args:
        name: the registry key and `--optimizers` spelling, e.g. "adam".
        keras_name: the class name in `ferroptim.optimizers` (Keras's), e.g. "Adam".
        kwargs: constructor arguments (Keras names), given to every peer; list every
            hyperparameter the NumPy steps need, even at its Keras default.
        slot_inits: the initial value of each slot, in Keras's slot order: a float, or
            `PARAMETER_COPY` for a copy of the parameter; their count sets the roofline's
            streams and the bytes per element. Empty when `state_init` is given.
        numpy_step: `f(params, grads, slots, iterations, **kwargs)`, NumPy as a user writes it;
            `slots` is `make_numpy_state(params, names)`.
        numpy_out_step: `f(params, grads, slots, scratch, iterations, **kwargs)` with in-place
            ufuncs, or None when there is none.
        scratch_per_tensor: how many scratch arrays `numpy_out_step` needs per parameter.
        torch_optimizer: `f(torch, tensors, implementation, **kwargs)` building the
            torch.optim optimizer, `implementation` (`{"fused": True}` or `{}`) among its
            arguments; None when torch has no fused CPU kernel for it.
        scalar_inits: initial values of the optimizer-wide scalars the NumPy steps carry from
            step to step (Nadam's momentum-cache product); they follow the slots in the NumPy
            steps' `slots`, as 0-d arrays of the parameters' dtype. Per step, not per element:
            they add nothing to the bytes per element.
        state_init: `f(params, names, **kwargs)` building the NumPy steps' state, for an
            optimizer that is not element-wise, whose state is not one array of the
            parameter's shape per slot (Adafactor's row and column factors, Muon's routing by
            rank and name); None for the element-wise ones. An optimizer that has one has no
            roofline: its step is not one streaming pass over its slots.
        settle: seconds the harness sleeps before each timed block of a case. NumPy's matrix
            products run on OpenBLAS's threads, which keep spinning for about 0.1 s after a
            call and would take a core from the next peer's block (measured: Muon's ferroptim
            step 1.6x slower right after NumPy's than after a pause of 0.2 s); 0 for
            optimizers whose NumPy steps are ufuncs.
    """

    name: str
    keras_name: str
    kwargs: Mapping[str, Any]
    slot_inits: Tuple[Union[float, str], ...]
    numpy_step: Optional[Callable[..., None]] = None
    numpy_out_step: Optional[Callable[..., None]] = None
    scratch_per_tensor: int = 1
    torch_optimizer: Optional[Callable[..., Any]] = None
    scalar_inits: Tuple[float, ...] = ()
    state_init: Optional[Callable[..., List[Any]]] = None
    settle: float = 0.0

    @property
    def element_wise(self) -> bool:
        """Whether a step is one streaming pass over the parameter, gradient and slots (then
        the roofline is its floor)."""
        return self.state_init is None

    def bytes_per_element(self, itemsize: int) -> Optional[int]:
        """Bytes a fused step moves per parameter element: reads the parameter, the gradient
        and every slot, writes the parameter and every slot; None for an optimizer that is
        not element-wise.

        Args:
            itemsize: bytes per element of the dtype.
        """
        if not self.element_wise:
            return None
        slots = len(self.slot_inits)
        return itemsize * ((2 + slots) + (1 + slots))

    def make_slots(self, params: Arrays) -> List[Arrays]:
        """Fresh slots for `params`: one list per slot kind, one array per parameter.

        Args:
            params: the parameters the slots belong to.
        """
        return [
            [p.copy() if value == PARAMETER_COPY else np.full_like(p, value) for p in params]
            for value in self.slot_inits
        ]

    def make_numpy_state(self, params: Arrays, names: Optional[Sequence[str]] = None) -> List[Any]:
        """What the NumPy steps carry between steps: `state_init(params, names, **kwargs)`
        when there is one, else `make_slots(params)` then one 0-d array per `scalar_inits`
        entry (in the first parameter's dtype, as Keras keeps them).

        Args:
            params: the parameters the state belongs to.
            names: their names, as the optimizer is built with them (default: Keras's
                `variable_0`, `variable_1`, ... of a list).
        """
        if self.state_init is not None:
            if names is None:
                names = [f"variable_{i}" for i in range(len(params))]
            return self.state_init(params, names, **self.kwargs)
        dtype = params[0].dtype if params else DTYPE
        scalars = [np.full((), value, dtype=dtype) for value in self.scalar_inits]
        return [*self.make_slots(params), *scalars]


# Keyed by the `--optimizers` name. Every class of the optimizer registry
# (`ferroptim.optimizers._BUILTINS`) has a record but the base Optimizer, OptimizerMap, the
# two wrappers and AdamW (tests/test_bench.py says why, and fails when a new class has none).
OPTIMIZERS: Dict[str, BenchOptimizer] = {
    spec.name: spec
    for spec in [
        BenchOptimizer(
            "sgd",
            "SGD",
            {"learning_rate": 0.01, "momentum": 0.9},
            (0.0,),
            sgd_numpy,
            sgd_numpy_out,
            1,
            _sgd_torch,
        ),
        BenchOptimizer(
            "adam",
            "Adam",
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
            (0.0, 0.0),
            adam_numpy,
            adam_numpy_out,
            1,
            _adam_torch,
        ),
        BenchOptimizer(
            "rmsprop",
            "RMSprop",
            {
                "learning_rate": 0.001,
                "rho": 0.9,
                "momentum": 0.0,
                "epsilon": 1e-7,
                "centered": False,
            },
            (0.0,),
            rmsprop_numpy,
            rmsprop_numpy_out,
            1,
        ),
        # Every RMSprop stream at once: velocity, momentum and average_gradient.
        BenchOptimizer(
            "rmsprop_centered",
            "RMSprop",
            {
                "learning_rate": 0.001,
                "rho": 0.9,
                "momentum": 0.9,
                "epsilon": 1e-7,
                "centered": True,
            },
            (0.0, 0.0, 0.0),
            rmsprop_numpy,
            rmsprop_numpy_out,
            1,
        ),
        BenchOptimizer(
            "adagrad",
            "Adagrad",
            {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
            (0.1,),
            adagrad_numpy,
            adagrad_numpy_out,
            1,
            _adagrad_torch,
        ),
        BenchOptimizer(
            "adadelta",
            "Adadelta",
            {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
            (0.0, 0.0),
            adadelta_numpy,
            adadelta_numpy_out,
            2,
        ),
        BenchOptimizer(
            "adamax",
            "Adamax",
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
            (0.0, 0.0),
            adamax_numpy,
            adamax_numpy_out,
            1,
        ),
        BenchOptimizer(
            "nadam",
            "Nadam",
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
            (0.0, 0.0),
            nadam_numpy,
            nadam_numpy_out,
            2,
            scalar_inits=(1.0,),
        ),
        BenchOptimizer(
            "lion",
            "Lion",
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.99},
            (0.0,),
            lion_numpy,
            lion_numpy_out,
            2,
        ),
        BenchOptimizer(
            "ftrl",
            "Ftrl",
            {
                "learning_rate": 0.001,
                "learning_rate_power": -0.5,
                "initial_accumulator_value": 0.1,
                "l1_regularization_strength": 0.0,
                "l2_regularization_strength": 0.0,
                "l2_shrinkage_regularization_strength": 0.0,
                "beta": 0.0,
            },
            (0.1, 0.0),
            ftrl_numpy,
            ftrl_numpy_out,
            2,
        ),
        # Lamb reads its tensors twice (a read-only pass for the trust ratio's norms, then the
        # update), yet its floor here is the one-pass roofline of its two slots: the extra
        # pass shows as a lower fraction of the roofline.
        BenchOptimizer(
            "lamb",
            "Lamb",
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
            (0.0, 0.0),
            lamb_numpy,
            lamb_numpy_out,
            1,
        ),
        BenchOptimizer(
            "schedule_free_adamw",
            "ScheduleFreeAdamW",
            {
                "learning_rate": 0.0025,
                "beta_1": 0.9,
                "beta_2": 0.999,
                "epsilon": 1e-8,
                "warmup_steps": 0,
            },
            (PARAMETER_COPY, 0.0),
            schedule_free_adamw_numpy,
            schedule_free_adamw_numpy_out,
            2,
        ),
        # Not element-wise: no roofline, and default cases of 2-D matrices.
        BenchOptimizer(
            "adafactor",
            "Adafactor",
            {
                "learning_rate": 0.001,
                "beta_2_decay": -0.8,
                "epsilon_1": 1e-30,
                "epsilon_2": 1e-3,
                "clip_threshold": 1.0,
                "relative_step": True,
            },
            (),
            adafactor_numpy,
            adafactor_numpy_out,
            2,
            state_init=adafactor_state,
        ),
        BenchOptimizer(
            "muon",
            "Muon",
            {
                "learning_rate": 0.001,
                "adam_beta_1": 0.9,
                "adam_beta_2": 0.999,
                "adam_weight_decay": 0.004,
                "epsilon": 1e-7,
                "weight_decay": 0.004,
                "exclude_layers": None,
                "exclude_embeddings": True,
                "muon_a": 3.4445,
                "muon_b": -4.7750,
                "muon_c": 2.0315,
                "adam_lr_ratio": 1.0,
                "momentum": 0.95,
                "ns_steps": 5,
                "nesterov": True,
                "rms_rate": 0.2,
            },
            (),
            muon_numpy,
            muon_numpy_out,
            4,
            state_init=muon_state,
            settle=0.2,
        ),
    ]
}


def _from_class(cls: type) -> BenchOptimizer:
    """The record of a registered element-wise optimizer that the list above leaves out: Keras's
    defaults, the slots' starting values read from an optimizer built on one element, and no
    NumPy peer (the report names it missing). A record in the list adds the NumPy steps."""
    probe = np.full(1, _PROBE, DTYPE)
    optimizer: Any = cls()
    optimizer.build([probe])
    inits = tuple(
        PARAMETER_COPY if slots[0][0] == _PROBE else float(slots[0][0])
        for slots in optimizer._slot_kinds.values()
    )
    kwargs = {"learning_rate": float(optimizer.get_config()["learning_rate"])}
    kwargs.update((name, getattr(optimizer, name)) for name in optimizer._hyperparameter_names)
    # Keras's default name ("schedule_free_adamw"), as `--optimizers` spells it.
    name = inspect.signature(cls).parameters["name"].default or cls.__name__.lower()
    return BenchOptimizer(name, cls.__name__, kwargs, inits)


# A value no optimizer starts a slot at, so a slot that holds it is a copy of the parameter.
_PROBE = 0.3671875


def _classes_without_record() -> List[type]:
    """The registered element-wise optimizers whose native rule no record above runs."""
    from ferroptim.optimizers import _BUILTINS
    from ferroptim.optimizers._unfused import Unfused

    recorded = {spec.keras_name for spec in OPTIMIZERS.values()}
    rules = {getattr(_BUILTINS[name.lower()], "_rule", None) for name in recorded}
    return [
        cls
        for cls in _BUILTINS.values()
        if getattr(cls, "_rule", None) not in rules and not issubclass(cls, Unfused)
    ]


OPTIMIZERS.update((spec.name, spec) for spec in map(_from_class, _classes_without_record()))

# What `--optimizers` runs when not given: the full set at every default size would take
# far longer than the two most used optimizers (`--optimizers all` runs the rest).
DEFAULT_OPTIMIZERS = ("sgd", "adam")
