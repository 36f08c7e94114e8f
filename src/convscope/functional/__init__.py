"""Pure kernels with ``torch.nn.functional`` names, signatures and defaults.

Each family lives in its own module (conv, pad, pool, activation, norm, loss, linear,
interpolate); every op has a backward and accepts meta tensors.
"""

import importlib

from ..ops import flatten

_FAMILIES = ("activation", "conv", "interpolate", "linear", "loss", "norm", "pad", "pool")

__all__ = ["flatten"]
for _family in _FAMILIES:
    # Read each family module by its full name: a function may share the module's name
    # (``linear``, ``pad``, ``interpolate``) and would shadow it as a package attribute.
    _module = importlib.import_module(f"{__name__}.{_family}")
    globals().update({name: getattr(_module, name) for name in _module.__all__})
    __all__ += _module.__all__
del _family, _module
