"""Learning-rate schedules (``keras.optimizers.schedules``), all defined in
``learning_rate_schedule``, whose ``__all__`` is the public list."""

from ferroptim.optimizers.schedules import learning_rate_schedule
from ferroptim.optimizers.schedules.learning_rate_schedule import *  # noqa: F403

__all__ = learning_rate_schedule.__all__
