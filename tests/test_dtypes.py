"""Integer and bool inputs, op by op, against torch: both refuse (convscope with an error naming
the dtype, on real and meta tensors alike), or both give the same dtype and values."""

import numpy as np
import pytest
import torch.nn.functional as TF

import convscope as cs
from torch_ref import same_or_both_refuse

F = cs.functional
DTYPES = [np.int64, np.int32, np.uint8, np.bool_]


def sample(shape: tuple, dtype, seed: int = 0) -> np.ndarray:
    """Small values, negative ones for signed dtypes."""
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return rng.integers(0 if np.dtype(dtype).kind == "u" else -4, 5, shape).astype(dtype)


def functional(name: str, *args, torch_fn=None, **kwargs):
    """(convscope, torch) twins of ``F.name(x, *args, **kwargs)``."""
    twin = torch_fn or getattr(TF, name)
    return (lambda *t: getattr(F, name)(*t, *args, **kwargs)), (lambda *t: twin(*t, *args, **kwargs))


def method(fn):
    """The same lambda for both engines (operators and Tensor methods)."""
    return fn, fn


X = (1, 2, 4, 4)
# (id, (convscope, torch), input shapes): one registry for every op and dtype.
CASES = [
    ("relu", functional("relu"), [X]),
    ("relu6", functional("relu6"), [X]),
    ("hardtanh", functional("hardtanh"), [X]),
    ("hardtanh_0_2", functional("hardtanh", 0.0, 2.0), [X]),
    ("neg", method(lambda x: -x), [X]),
    ("abs", method(lambda x: x.abs()), [X]),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case,fns,shapes", CASES, ids=[c[0] for c in CASES])
def test_integer_and_bool_inputs_like_torch(case, fns, shapes, dtype):
    same_or_both_refuse(*fns, [sample(s, dtype, i) for i, s in enumerate(shapes)])
