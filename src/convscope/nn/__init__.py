"""Modules with torch.nn names, arguments and state_dict keys."""

from . import init
from ._utils import meta_parameters
from .activation import *  # noqa: F403
from .conv import *  # noqa: F403
from .linear import *  # noqa: F403
from .loss import *  # noqa: F403
from .module import *  # noqa: F403
from .norm import *  # noqa: F403
from .padding import *  # noqa: F403
from .pooling import *  # noqa: F403
from .shuffle import *  # noqa: F403
from .upsample import *  # noqa: F403

__all__ = ["init", "meta_parameters"]
for _m in (activation, conv, linear, loss, module, norm, padding, pooling, shuffle, upsample):  # noqa: F405
    __all__ += _m.__all__
