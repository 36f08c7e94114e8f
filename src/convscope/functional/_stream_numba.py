"""Nontemporal ("streaming") stores for compiled kernels whose output is larger than the caches.

Not part of the API: :mod:`._pool_numba`'s batch-norm kernels call these when their caller asks
them to stream (an output of ``norm._STREAM_BYTES`` or more).

A plain store first reads the cache line it writes into (a read for ownership). For an output
that leaves the caches before anyone reads it, that read is wasted: a nontemporal store writes a
whole 64-byte line straight to memory. An elementwise map then moves two bytes where it moved
three: eval batch norm over ``8×256×56²`` float32 took 1.13 ms instead of 1.56 on two threads
(median of 15 alternating rounds); over an output of 1.5 MB, which stays in the caches,
streaming was 40 % slower.

Each intrinsic computes one line: the same IEEE operations, in the same order, as the kernel's
plain loop (no contraction into fused multiply-adds), so both give the same bits. The lines go
out of order with other stores, so a kernel that streamed ends with :func:`fence` before its
thread hands the output on.

numba's on-disk cache of a kernel that calls these does not see a change to this file: after
editing it, delete the callers' cache files (``__pycache__/_pool_numba*.nbi`` and ``.nbc``).
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

LINE = 64  # bytes: a cache line, and the store's alignment

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _line(context, builder, array_type, array, at):  # noqa: ANN001, ANN202
    """A pointer to the line of ``array``'s elements from ``at``, and the line's vector type."""
    element = context.get_data_type(array_type.dtype)
    vector = ir.VectorType(element, LINE // context.get_abi_sizeof(element))
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [at]), vector.as_pointer()), vector


def _load(context, builder, array_type, array, at):  # noqa: ANN001, ANN202
    pointer, vector = _line(context, builder, array_type, array, at)
    return builder.load(pointer, align=context.get_abi_sizeof(vector.element))


def _splat(builder, value, like):  # noqa: ANN001, ANN202
    """``value`` in every lane of a vector of ``like``'s type."""
    lanes = like.type.count
    one = builder.insert_element(ir.Constant(like.type, ir.Undefined), value, ir.IntType(32)(0))
    return builder.shuffle_vector(one, ir.Constant(like.type, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _store(context, builder, array_type, array, at, value):  # noqa: ANN001, ANN202
    pointer, _ = _line(context, builder, array_type, array, at)
    store = builder.store(value, pointer, align=LINE)
    store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
    return context.get_dummy_value()


@intrinsic
def norm_line(typingctx, out, x, at, mean, invstd, a, b):  # noqa: ANN001, ANN201, ARG001
    """``out[at:at + line] = ((x[at:at + line] − mean)·invstd)·a + b``, streamed: 1-d C-contiguous
    arrays of one dtype, the scalars of it, ``out``'s element ``at`` on a line's start. Training
    batch norm's output (or with ``a = 1``, ``b = 0`` its normalised input), and eval batch
    norm's (``mean = 0``, ``invstd = 1``: ``(x − 0)·1`` is ``x``, so the line is ``x·a + b``)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        out_v, x_v, at_v, mean_v, invstd_v, a_v, b_v = args
        values = _load(context, builder, signature.args[1], x_v, at_v)
        centred = builder.fmul(builder.fsub(values, _splat(builder, mean_v, values)), _splat(builder, invstd_v, values))
        result = builder.fadd(builder.fmul(centred, _splat(builder, a_v, centred)), _splat(builder, b_v, centred))
        return _store(context, builder, signature.args[0], out_v, at_v, result)

    return types.void(out, x, types.intp, out.dtype, out.dtype, out.dtype, out.dtype), codegen


@intrinsic
def norm_grad_line(typingctx, out, g, xhat, at, along, mean, scale):  # noqa: ANN001, ANN201, ARG001
    """``out[at:at + line] = ((g − x̂·along) − mean)·scale`` over the line, streamed (training
    batch norm's input gradient); arrays and scalars as in :func:`norm_line`."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        out_v, g_v, h_v, at_v, along_v, mean_v, scale_v = args
        gs = _load(context, builder, signature.args[1], g_v, at_v)
        hs = _load(context, builder, signature.args[2], h_v, at_v)
        centred = builder.fsub(gs, builder.fmul(hs, _splat(builder, along_v, hs)))
        result = builder.fmul(builder.fsub(centred, _splat(builder, mean_v, gs)), _splat(builder, scale_v, gs))
        return _store(context, builder, signature.args[0], out_v, at_v, result)

    return types.void(out, g, xhat, types.intp, out.dtype, out.dtype, out.dtype), codegen


@intrinsic
def fence(typingctx):  # noqa: ANN001, ANN201, ARG001
    """Every streamed line written before any later store (x86's ``sfence``; elsewhere a full
    fence)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
        if _X86:
            sfence = builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(sfence, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(nogil=True, inline="always")
def lines(out, first, last):  # noqa: ANN001, ANN201
    """``(start, stop)``: the whole lines of ``out[first:last]`` (1-d), to stream. The cells
    before ``start`` and from ``stop`` take plain stores."""
    per = LINE // out.itemsize
    misaligned = np.int64(out.ctypes.data % LINE) // out.itemsize
    start = min(last, first + (per - (misaligned + first) % per) % per)
    return start, start + (last - start) // per * per
