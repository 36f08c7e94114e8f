"""Every op row and a sample of the layer rows that ``summary`` lists for every zoo model
trace by their names, and each trace recomputes its value from the record alone: the
tracer has a provenance rule for everything the zoo's forward passes do (residual
additions, gates, layer scales, concatenations, channel shuffles, means in ``forward``).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import convscope as cs
from convscope import zoo
from convscope.trace import trace

SMALL = (3, 96, 96)  # colour models take any size this large; the others keep their own
FIXED = {"alexnet_original", "googlenet_paper"}  # a classifier sized for the paper's input


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.names())
def test_every_op_row_and_sampled_layer_rows_trace_and_recompute(name: str) -> None:
    native = tuple(zoo.entry(name).input_shape)
    shape = SMALL if native[0] == 3 and name not in FIXED else native
    cs.manual_seed(0)
    net = zoo.build(name).eval()
    rows = [row for row in cs.summary(net, shape).rows if row.output_shape]
    paths = {path for path, _ in net.named_modules()}
    picker = random.Random(name)
    ops = [row for row in rows if row.name.partition("#")[0] not in paths]
    chosen = ops + picker.sample(rows, min(6, len(rows)))
    x = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    for row in chosen:
        index = tuple(picker.randrange(n) for n in row.output_shape)
        t = trace(net, x, row.name, index)
        assert abs(t.recompute() - t.value) <= 1e-4 * max(1.0, abs(t.value)), (row.name, t.recompute(), t.value)
