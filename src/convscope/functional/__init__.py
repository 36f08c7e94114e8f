"""Pure kernels with ``torch.nn.functional`` names, signatures and defaults.

Each family lives in its own module (conv, pad, pool, activation, norm, loss, linear,
interpolate); every op has a backward and accepts meta tensors.
"""

from ..ops import flatten
from .activation import *  # noqa: F403
from .conv import *  # noqa: F403
from .interpolate import *  # noqa: F403
from .linear import *  # noqa: F403
from .loss import *  # noqa: F403
from .norm import *  # noqa: F403
from .pad import *  # noqa: F403
from .pool import *  # noqa: F403

__all__ = ["flatten"]
for _m in (activation, conv, interpolate, linear, loss, norm, pad, pool):  # noqa: F405
    __all__ += _m.__all__
