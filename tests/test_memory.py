"""Memory: the saved rules against the backward closures they describe, the scratch rules
against tracemalloc per op, whole training steps and forward passes against tracemalloc,
and torch's saved tensors (``saved_tensors_hooks``) against a table of what torch saves per
op, with every difference from convscope's engine pinned and explained."""

import gc
import tracemalloc

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import convscope as cs
import convscope.functional as F
from convscope import nn, optim
from convscope.analyze.memory import OPTIMIZERS, inference_peak, rule_of
from convscope.analyze.walk import OpEvent, output_tensors, walk
from convscope.interop.torch_convert import to_torch
from convscope.pretrained.digits import digits_cnn
from convscope.rules import SAVED_RULES
from convscope.tensor import Tensor, observe

N = 8


def _p(*shape):
    return ("param", shape)


# (name, fn(*inputs, *params), input shapes, parameter shapes)
SAMPLES = [
    ("conv3x3", lambda x, w, b: F.conv2d(x, w, b, padding=1), [(N, 16, 24, 24)], [_p(32, 16, 3, 3), _p(32)]),
    ("conv1x1", lambda x, w: F.conv2d(x, w), [(N, 32, 20, 20)], [_p(48, 32, 1, 1)]),
    ("conv_stride2", lambda x, w: F.conv2d(x, w, stride=2, padding=2), [(N, 8, 31, 29)], [_p(16, 8, 5, 5)]),
    ("conv_grouped", lambda x, w: F.conv2d(x, w, padding=1, groups=4), [(N, 16, 20, 20)], [_p(32, 4, 3, 3)]),
    # stride-1 planar input gradients made without the padding: padding past the kernel's reach
    # (g cropped, not padded), and a transposed conv's forward (its cropped cells never made)
    ("conv_pad_beyond_reach", lambda x, w: F.conv2d(x, w, padding=3), [(N, 4, 60, 60)], [_p(32, 4, 3, 3)]),
    ("conv_transpose_s1", lambda x, w: F.conv_transpose2d(x, w, padding=1), [(N, 16, 30, 30)], [_p(16, 16, 3, 3)]),
    # planes big enough that the compiled path's padded copy for the weight gradient passes the slack
    ("conv_grouped_wide", lambda x, w: F.conv2d(x, w, padding=1, groups=8), [(N, 32, 40, 40)], [_p(32, 4, 3, 3)]),
    ("conv_transpose_grouped", lambda x, w: F.conv_transpose2d(x, w, padding=1, groups=4), [(N, 16, 30, 30)],
     [_p(16, 2, 3, 3)]),
    ("depthwise", lambda x, w: F.conv2d(x, w, padding=1, groups=32), [(N, 32, 24, 24)], [_p(32, 1, 3, 3)]),
    ("depthwise_s2", lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=32), [(N, 32, 24, 24)],
     [_p(32, 1, 3, 3)]),
    ("conv_transpose", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), [(N, 16, 12, 12)],
     [_p(16, 8, 4, 4)]),
    # per stride phase: a whole-g phase (1×1), phases no tap reaches, a depthwise phase, 3-d
    ("conv_1x1_stride2", lambda x, w: F.conv2d(x, w, stride=2), [(N, 16, 15, 15)], [_p(24, 16, 1, 1)]),
    ("conv_transpose_s3_d2", lambda x, w: F.conv_transpose2d(x, w, stride=3, padding=1, output_padding=1,
                                                             dilation=2), [(N, 16, 9, 10)], [_p(16, 8, 3, 3)]),
    ("conv_stride2_one_output_per_group", lambda x, w: F.conv2d(x, w, stride=2, groups=2), [(N, 16, 17, 17)],
     [_p(2, 8, 3, 3)]),
    ("conv3d_stride2", lambda x, w: F.conv3d(x, w, stride=2, padding=1), [(N, 8, 9, 10, 11)], [_p(8, 8, 3, 3, 3)]),
    ("conv_transpose_wide_phases", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), [(2, 16, 3, 70)],
     [_p(16, 8, 4, 4)]),
    # im2col's stride-1 input gradient as a flipped conv over a channels-last copy of g (small
    # planes; padding past the kernel's reach: g cropped), and a transposed conv's forward
    ("conv_im2col_small_planes", lambda x, w: F.conv2d(x, w, padding=1), [(N, 64, 12, 12)], [_p(64, 64, 3, 3)]),
    ("conv_im2col_pad_beyond_reach", lambda x, w: F.conv2d(x, w, padding=3), [(N, 64, 10, 10)], [_p(64, 64, 3, 3)]),
    ("conv_transpose_im2col", lambda x, w: F.conv_transpose2d(x, w, padding=1), [(N, 64, 12, 12)],
     [_p(64, 64, 3, 3)]),
    # the phases as one stacked conv: planar tiles copied into the cells (wide rows, one sample),
    # and 1×1 phases (direct path) through the stacked output
    ("conv_transpose_stacked_wide", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), [(1, 16, 12, 70)],
     [_p(16, 8, 4, 4)]),
    ("conv_transpose_stacked_k2", lambda x, w: F.conv_transpose2d(x, w, stride=2), [(N, 16, 20, 20)],
     [_p(16, 16, 2, 2)]),
    # planar: over stride phases (few channels), columns of the windows alone (wide rows, one
    # sample); the input gradient by taps (compiled, >= 100 windows) or by im2col's col2im
    ("conv_stride2_few_channels", lambda x, w: F.conv2d(x, w, stride=2, padding=3), [(N, 3, 30, 28)],
     [_p(16, 3, 7, 7)]),
    ("conv_stride2_few_channels_few_windows", lambda x, w: F.conv2d(x, w, stride=2, padding=3), [(N, 3, 18, 16)],
     [_p(16, 3, 7, 7)]),
    # a transposed conv with few outputs: forward by taps or by im2col's col2im, backward a
    # strided planar conv
    ("conv_transpose_few_outputs", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), [(N, 16, 100, 101)],
     [_p(16, 3, 4, 4)]),
    ("conv_transpose_few_outputs_few_windows", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
     [(N, 16, 9, 10)], [_p(16, 3, 4, 4)]),
    ("conv_wide_rows", lambda x, w: F.conv2d(x, w, padding=1), [(1, 2, 20, 80)], [_p(32, 2, 3, 3)]),
    ("linear", lambda x, w, b: F.linear(x, w, b), [(64, 300)], [_p(200, 300), _p(200)]),
    ("relu", F.relu, [(N, 32, 32, 32)], []),
    ("relu6", F.relu6, [(N, 32, 32, 32)], []),
    ("leaky_relu", F.leaky_relu, [(N, 32, 32, 32)], []),
    ("prelu", F.prelu, [(N, 32, 32, 32)], [_p(32)]),
    ("sigmoid", F.sigmoid, [(N, 32, 32, 32)], []),
    ("tanh", F.tanh, [(N, 32, 32, 32)], []),
    ("silu", F.silu, [(N, 32, 32, 32)], []),
    ("mish", F.mish, [(N, 32, 32, 32)], []),
    ("gelu", F.gelu, [(N, 32, 32, 32)], []),
    ("erf", cs.ops.erf, [(N, 32, 32, 32)], []),
    ("hardswish", F.hardswish, [(N, 32, 32, 32)], []),
    ("hardsigmoid", F.hardsigmoid, [(N, 32, 32, 32)], []),
    ("elu", F.elu, [(N, 32, 32, 32)], []),
    ("softplus", F.softplus, [(N, 32, 32, 32)], []),
    ("logsigmoid", F.logsigmoid, [(N, 32, 32, 32)], []),
    ("softmax", lambda x: F.softmax(x, 1), [(N, 32, 32, 32)], []),
    ("log_softmax", lambda x: F.log_softmax(x, 1), [(N, 32, 32, 32)], []),
    ("batch_norm_train", lambda x, w, b: F.batch_norm(x, np.zeros(32, np.float32), np.ones(32, np.float32), w, b,
                                                      training=True), [(N, 32, 24, 24)], [_p(32), _p(32)]),
    ("batch_norm_eval", lambda x, w, b: F.batch_norm(x, np.zeros(32, np.float32), np.ones(32, np.float32), w, b),
     [(N, 32, 24, 24)], [_p(32), _p(32)]),
    ("group_norm", lambda x, w, b: F.group_norm(x, 4, w, b), [(N, 32, 24, 24)], [_p(32), _p(32)]),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (24, 24), w, b), [(N, 32, 24, 24)], [_p(24, 24), _p(24, 24)]),
    ("max_pool", lambda x: F.max_pool2d(x, 3, 2, 1), [(N, 32, 32, 32)], []),
    ("max_pool_2x2", lambda x: F.max_pool2d(x, 2), [(N, 32, 32, 32)], []),
    ("avg_pool", lambda x: F.avg_pool2d(x, 3, 2, 1), [(N, 32, 32, 32)], []),
    ("adaptive_avg", lambda x: F.adaptive_avg_pool2d(x, (5, 7)), [(N, 32, 32, 32)], []),
    ("global_avg", lambda x: F.adaptive_avg_pool2d(x, 1), [(N, 32, 32, 32)], []),
    ("adaptive_max", lambda x: F.adaptive_max_pool2d(x, (4, 4)), [(N, 32, 32, 32)], []),
    ("nearest", lambda x: F.interpolate(x, scale_factor=2.0), [(N, 16, 24, 24)], []),
    ("bilinear", lambda x: F.interpolate(x, size=(40, 36), mode="bilinear"), [(N, 16, 24, 24)], []),
    ("pad_reflect", lambda x: F.pad(x, (2, 2, 1, 1), mode="reflect"), [(N, 16, 24, 24)], []),
    ("pad_constant", lambda x: F.pad(x, (2, 2, 1, 1)), [(N, 16, 24, 24)], []),
    ("dropout", lambda x: F.dropout(x, 0.3), [(N, 32, 32, 32)], []),
    ("stochastic_depth", lambda x: F.stochastic_depth(x, 0.3, "row"), [(N, 32, 32, 32)], []),
    ("add", lambda x, y: x + y, [(N, 32, 32, 32), (N, 32, 32, 32)], []),
    ("mul", lambda x, y: x * y, [(N, 32, 32, 32), (N, 32, 32, 32)], []),
    ("cat", lambda x, y: cs.cat([x, y], 1), [(N, 32, 24, 24), (N, 16, 24, 24)], []),
    ("flatten", lambda x: x.flatten(1), [(N, 32, 24, 24)], []),
    ("mean", lambda x: x.mean((2, 3)), [(N, 32, 24, 24)], []),
]
IDS = [s[0] for s in SAMPLES]


def _make(sample, seed=0):
    _, fn, shapes, params = sample
    rng = np.random.default_rng(seed)
    xs = [cs.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]
    ps = [nn.Parameter(rng.standard_normal(s).astype(np.float32)) for _, s in params]
    return fn, xs + ps


def _run(fn, args):
    """The op's output and the event of the last op it ran (the one whose closure we read)."""
    events = []
    with observe(lambda op, i, o, a: events.append(OpEvent(op, None, i, o, a, 0))):
        out = fn(*args)
    return out, events[-1]


def _owner(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _closure_arrays(fn):
    """Every ndarray a backward closure can reach (through nested closures, containers and
    convscope objects); a Tensor counts as its data."""
    seen, stack, found = set(), [fn], []
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            found.append(obj)
        elif isinstance(obj, Tensor):
            if obj.data is not None:
                found.append(obj.data)
        elif isinstance(obj, (tuple, list, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif callable(obj) and hasattr(obj, "__code__"):
            for cell in obj.__closure__ or ():
                try:
                    stack.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
            stack.extend(obj.__defaults__ or ())
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("convscope") and not isinstance(obj, type):
            stack.extend(vars(obj).values())
    return found


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_saved_rule_is_what_the_backward_closure_keeps(sample):
    """The rule names exactly the inputs and output the closure reads, and the bytes of the
    other arrays it holds (a padded copy, a mask, the normalised input)."""
    fn, args = _make(sample)
    out, ev = _run(fn, args)
    saved = rule_of(ev)
    inputs = [_owner(t.data) for t in ev.inputs]
    refs, reads_output, extra = set(), False, {}
    for a in _closure_arrays(out._backward):
        o = _owner(a)
        hits = [i for i, b in enumerate(inputs) if b is o]
        if hits:
            refs.update(hits)
        elif o is _owner(out.data):
            reads_output = True
        else:
            extra[id(o)] = o.nbytes
    assert (tuple(sorted(refs)), reads_output) == (saved.inputs, saved.output)
    assert abs(sum(extra.values()) - saved.extra_bytes) <= 2048, (sum(extra.values()), saved.extra)


def _scratch_measured(sample):
    """(rule, forward scratch, backward scratch) of one op call at the current thread count."""
    fn, args = _make(sample)
    warm = fn(*args)  # a first forward and backward compile what the optional JIT compiles (not scratch)
    warm._backward(np.ones(warm.shape, warm.dtype))
    gc.collect()
    tracemalloc.start()
    out = fn(*args)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    forward = peak - current
    out, ev = _run(fn, args)
    saved = rule_of(ev)
    seed = np.ones(out.shape, out.dtype)
    gc.collect()
    tracemalloc.start()
    grads = out._backward(seed)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert grads is not None
    return saved, forward, peak - current


def _near(rule, measured):
    return abs(rule - measured) <= 0.25 * max(rule, measured) + 80_000


def assert_scratch_rules_hold(sample):
    """Forward scratch: the peak above what the op leaves (output, closure arrays); backward
    scratch: the peak of the closure call above the gradients it returns. On one thread the
    rule is what the kernels allocate; on two, each busy thread holds its tile's buffers, but a
    thread that wakes late leaves its tiles to the other: the rule (both busy) is the most,
    the one-thread rule the least. Two threads' tiles can be smaller than one's, so on a busy
    machine (one thread doing the work) the peak can fall below that: up to three calls."""
    with threadpool_limits(1):
        single, forward, backward = _scratch_measured(sample)
    for rule, measured in ((single.workspace, forward), (single.backward_workspace, backward)):
        assert _near(rule, measured), (single, forward, backward)
    with threadpool_limits(2):
        for _ in range(3):
            double, forward, backward = _scratch_measured(sample)
            held = [_near(low, measured) or _near(high, measured) or low <= measured <= high
                    for low, high, measured in ((single.workspace, double.workspace, forward),
                                                (single.backward_workspace, double.backward_workspace, backward))]
            if all(held):
                break
    assert all(held), (double, forward, backward)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_scratch_rules_match_tracemalloc(sample):
    assert_scratch_rules_hold(sample)


def test_every_zoo_op_has_a_saved_rule():
    missing = {op for name in cs.zoo.names() for op in cs.training_memory(name).no_rule}
    assert not missing
    assert {"conv2d", "batch_norm", "relu", "add", "linear", "max_pool2d", "cat", "reshape"} <= set(SAVED_RULES)


# --- whole models against tracemalloc ---------------------------------------------------------
def _build(name):
    cs.manual_seed(0)
    return digits_cnn() if name == "digits" else cs.zoo.build(name)


def _load_compiled_kernels():
    """The optional JIT imports numba and loads (or compiles) its kernels on the first
    depthwise conv, pool or eval batch norm of a process: memory of the process, not of a step."""
    x = cs.tensor(np.zeros((1, 2, 5, 5), np.float32), requires_grad=True)
    w = cs.tensor(np.zeros((2, 1, 3, 3), np.float32), requires_grad=True)
    y = F.conv2d(x, w, padding=1, groups=2)
    pooled = F.max_pool2d(y, 2) + F.avg_pool2d(y, 2)
    normed = F.batch_norm(pooled, np.zeros(2, np.float32), np.ones(2, np.float32))
    normed.sum().backward()


def _measured_step(model, shape, batch, optimizer):
    """Bytes alive at the peak of one real step: parameters and the input (made before),
    plus tracemalloc's peak over forward, loss, backward and optimizer step."""
    _load_compiled_kernels()
    model.train()
    params = list(model.parameters())
    make = {"sgd": lambda: optim.SGD(params, lr=0.01, momentum=0.9), "plain_sgd": lambda: optim.SGD(params, lr=0.01),
            "adam": lambda: optim.Adam(params, lr=1e-3), "adamw": lambda: optim.AdamW(params, lr=1e-3)}[optimizer]
    opt = make()
    x = cs.tensor(np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32))
    gc.collect()
    tracemalloc.start()
    out = model(x)
    loss = F.cross_entropy(out, cs.tensor(np.zeros(batch, np.int64)))
    loss.backward()
    opt.step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return sum(p.data.nbytes for p in params) + x.data.nbytes + peak


STEPS = [("digits", (1, 8, 8), 64, "sgd"), ("digits", (1, 8, 8), 64, "adam"),
         ("resnet18", (3, 64, 64), 8, "sgd"), ("mobilenet_v2", (3, 64, 64), 8, "adam")]


@pytest.mark.parametrize("name,shape,batch,optimizer", STEPS)
def test_training_step_matches_tracemalloc(name, shape, batch, optimizer):
    model = _build(name)
    with threadpool_limits(1):  # a second thread's tile buffers may or may not be alive at the peak
        estimate = cs.training_memory(model, shape, batch_size=batch, optimizer=optimizer)
        measured = _measured_step(model, shape, batch, optimizer)
    assert abs(estimate.peak - measured) <= 0.15 * measured, (estimate.peak, measured, estimate.phase)


@pytest.mark.slow
@pytest.mark.parametrize("name,shape,batch,optimizer", [("vgg11", (3, 32, 32), 4, "sgd"),
                                                         ("resnet18", (3, 64, 64), 8, "adam"),
                                                         ("mobilenet_v2", (3, 64, 64), 8, "sgd")])
def test_training_step_matches_tracemalloc_larger(name, shape, batch, optimizer):
    test_training_step_matches_tracemalloc(name, shape, batch, optimizer)


def _measured_inference(model, shape, batch):
    _load_compiled_kernels()
    x = cs.tensor(np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32))
    gc.collect()
    with cs.no_grad():
        tracemalloc.start()
        model(x)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak + x.data.nbytes


@pytest.mark.parametrize("name,shape,batch", [("digits", (1, 8, 8), 64), ("resnet18", (3, 64, 64), 8)])
def test_inference_peak_matches_tracemalloc(name, shape, batch):
    """Without a graph: the live activations plus the largest op's scratch (and what its
    backward closure would have kept, freed when the op returns). On one thread that is what
    the forward allocates; on two, between the one-thread figure and every busy thread's
    buffers alive at once (a thread that wakes late leaves its tiles to the other)."""
    model = _build(name).eval()
    with threadpool_limits(1):
        measured = _measured_inference(model, shape, batch)
        single = cs.summary(model, (batch, *shape)).totals
    assert single.peak_activation_bytes < single.peak_scratch_bytes
    assert abs(single.peak_scratch_bytes - measured) <= 0.15 * measured, (single, measured)
    with threadpool_limits(2):
        measured = _measured_inference(model, shape, batch)
        double = cs.summary(model, (batch, *shape)).totals
    assert 0.85 * single.peak_scratch_bytes <= measured <= 1.15 * double.peak_scratch_bytes, (single, double, measured)


def test_inference_liveness_by_hand():
    """conv → relu → conv: the input and the first conv's output are live together, then
    that output and the relu's, then the relu's and the last output; a reshape is a view."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Flatten())
    s = cs.summary(model, (1, 1, 10, 10))
    four, two, one = 4 * 100 * 4, 2 * 100 * 4, 100 * 4
    assert s.totals.peak_activation_bytes == max(one + four, four + four, four + two)
    peak, _ = inference_peak(walk(model, (Tensor.meta((1, 1, 10, 10)),)))
    assert peak == s.totals.peak_activation_bytes


# --- torch's saved tensors -------------------------------------------------------------------
def _nbytes(t):
    return int(np.prod(t.shape)) * t.dtype.itemsize


# What torch's autograd saves per op (measured with saved_tensors_hooks on torch 2.x):
# (input positions, whether the output, extra bytes). Parameters (and a BN's running
# statistics) are not counted.
TORCH_SAVES = {
    "conv2d": lambda ev: ((0,), False, 0),  # input and weight
    "linear": lambda ev: ((0,), False, 0),  # input and weight
    "batch_norm": lambda ev: ((0,), False, 2 * ev.inputs[0].shape[1] * 4 if ev.attrs.get("training") else 0),
    "relu": lambda ev: ((), True, 0),  # its result
    "hardtanh": lambda ev: ((0,), False, 0),  # ReLU6(inplace=False): its input
    "max_pool2d": lambda ev: ((0,), False, 8 * int(np.prod(ev.output.shape))),  # input and int64 indices
    "adaptive_avg_pool2d": lambda ev: ((), False, 0) if ev.output.shape[2:] == (1, 1) else ((0,), False, 0),
}
NOTHING = ("add", "cat", "reshape", "sum", "div", "dropout")  # dropout is identity in eval; add/cat/views keep nothing

# convscope's engine keeps more, op by op; each difference with its reason (checked below).
DIFFERENCES = {
    "conv2d": "also keeps xp, the zero-padded input in its kernels' layout (channels-last on the im2col path; "
              "none on the compiled depthwise path, which pads as it reads), so the weight gradient needs no "
              "second pad and transpose",
    "relu": "the tape keeps the input too (every op result holds its parents); the closure reads both",
    "hardtanh": "keeps the output as well as the input (unary ops capture both)",
    "batch_norm": "keeps the normalised input xhat (torch recomputes it from the input and 1/std)",
    "max_pool2d": "keeps less: only each window's winning cell as a uint8 offset from the window's start, "
                  "where torch keeps the input and int64 plane indices",
    "add": "the tape keeps both operands and _binary's closure the sum, though the gradient needs none",
    "reshape": "the view's base stays referenced (no bytes: the same memory)",
    "adaptive_avg_pool2d": "the closure reads the input's shape, so the input stays; torch's 1×1 case is a mean "
                           "and keeps nothing",
}
SAME = ("linear",)  # the input and the weight, as torch


def _torch_saved(model, x):
    """Bytes of the distinct storages autograd saves, parameters and buffers excluded."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen = {}

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in own:
            seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())


def _predicted_torch(run):
    """Torch's saved bytes predicted from the walk with TORCH_SAVES (each tensor once)."""
    params = {id(p) for c in run.calls for p in c.module._parameters.values() if p is not None}
    kept, extra = {}, 0
    for ev in run.events:
        if ev.op in NOTHING:
            continue
        inputs, output, more = TORCH_SAVES[ev.op](ev)
        for i in inputs:
            if id(ev.inputs[i]) not in params:
                kept[id(_base(run, ev.inputs[i]))] = _nbytes(ev.inputs[i])
        if output:
            kept[id(ev.output)] = _nbytes(ev.output)
        extra += more
    return sum(kept.values()) + extra


def _base(run, t):
    """A reshape's output shares its input's storage (torch saves the storage once)."""
    for ev in run.events:
        if ev.output is t and ev.op == "reshape":
            return _base(run, ev.inputs[0])
    return t


@pytest.mark.parametrize("name,shape,batch", [("digits", (1, 8, 8), 16), ("resnet18", (3, 32, 32), 2),
                                              ("mobilenet_v2", (3, 32, 32), 2)])
def test_torch_saved_tensors_are_explained_op_by_op(name, shape, batch, capsys):
    """The table of what torch saves predicts torch's measured saved bytes exactly on the
    equivalent torch model (convscope.to_torch, training mode, dropout off); convscope's
    engine keeps more, for the reasons in DIFFERENCES."""
    model = _build(name)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    theirs = to_torch(model, (batch, *shape)).train()
    measured = _torch_saved(theirs, torch.randn(batch, *shape))
    run = walk(model.train(), (Tensor.meta((batch, *shape)),))
    assert _predicted_torch(run) == measured
    ours = cs.training_memory(model, shape, batch_size=batch)
    assert {ev.op for ev in run.events} <= set(DIFFERENCES) | set(SAME) | set(NOTHING)
    assert ours.needed > measured  # convscope keeps more for its backward than torch
    with capsys.disabled():
        print(f"\n{name} {batch}×{'×'.join(map(str, shape))}: torch saves {measured:,} B, convscope's graph keeps "
              f"{ours.saved:,} B ({ours.saved / measured:.2f}×)")


TF = torch.nn.functional
# (op, convscope call, torch call, shapes, parameter positions, convscope's needed bytes as a
# function of the input's bytes x, torch's saved bytes as a function of x)
SINGLE = [
    ("conv2d", lambda x, w: F.conv2d(x, w, padding=1), lambda x, w: TF.conv2d(x, w, padding=1),
     [(2, 4, 8, 8), (6, 4, 3, 3)], {1}, lambda x: x + 2 * 4 * 10 * 10 * 4, lambda x: x),  # + xp: (8 + 2)² cells
    ("relu", F.relu, torch.relu, [(2, 4, 8, 8)], set(), lambda x: 2 * x, lambda x: x),  # + the input
    ("batch_norm", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
     lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True), [(2, 4, 8, 8), (4,), (4,)], {1, 2},
     lambda x: 2 * x + 4 * 4, lambda x: x + 2 * 4 * 4),  # + xhat; 1/std (4 floats) vs torch's mean and 1/std
    ("add", lambda x, y: x + y, lambda x, y: x + y, [(2, 4, 8, 8), (2, 4, 8, 8)], set(), lambda x: 3 * x,
     lambda x: 0),  # both operands and the sum, where torch keeps nothing
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2), [(2, 4, 8, 8)], set(),
     lambda x: x // 16, lambda x: x + 2 * x // 4),  # uint8 offsets vs the input and int64 indices
]


@pytest.mark.parametrize("op,ours,theirs,shapes,params,needed,saved", SINGLE, ids=[c[0] for c in SINGLE])
def test_single_op_difference_from_torch_is_pinned(op, ours, theirs, shapes, params, needed, saved):
    """Per op: what convscope's closure needs and what torch saves (x = the float32 input's
    bytes), the gap being the DIFFERENCES entry; torch's figure is also TORCH_SAVES'."""
    assert op in DIFFERENCES
    arrays = [np.random.default_rng(i).standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
    out, ev = _run(ours, [cs.tensor(a, requires_grad=True) for a in arrays])
    rule = rule_of(ev)
    ours_bytes = sum(_nbytes(ev.inputs[i]) for i in rule.inputs if i not in params) + rule.extra_bytes + (
        _nbytes(ev.output) if rule.output else 0)
    x = arrays[0].nbytes
    assert ours_bytes == needed(x)
    targs = [torch.tensor(a, requires_grad=True) for a in arrays]
    own = {targs[i].untyped_storage().data_ptr() for i in params}
    seen = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in own:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        theirs(*targs)
    assert sum(seen.values()) == saved(x)
    if op in TORCH_SAVES:
        inputs, output, more = TORCH_SAVES[op](ev)
        assert saved(x) == sum(_nbytes(ev.inputs[i]) for i in inputs) + more + (_nbytes(ev.output) if output else 0)


# --- the report ------------------------------------------------------------------------------
def test_training_report_adds_up_and_renders():
    s = cs.summary("resnet18", (3, 32, 32), training=True, batch_size=4, optimizer="adam")
    t = s.training
    assert t.params == s.totals.param_bytes == 4 * s.totals.params
    assert t.grads == t.params and t.optimizer_state == 2 * t.params
    assert sum(m.params for m in t.layers) == t.params and sum(m.saved for m in t.layers) == t.saved
    assert sum(m.optimizer for m in t.layers) == t.optimizer_state
    assert t.peak == max(t.forward_peak, t.backward_peak, t.step_peak)
    assert t.peak >= t.params + t.saved + t.grads + t.optimizer_state  # the step holds all of them at once
    assert s.input_shapes == [(4, 3, 32, 32)]
    d = s.to_dict()["training"]
    assert d["optimizer"] == "adam" and d["layers"][0]["name"] == "input"
    text = str(s)
    assert "Training step (batch 4, adam): peak" in text and max(len(line) for line in text.splitlines()) <= 80
    sgd = cs.training_memory("resnet18", (3, 32, 32), batch_size=4)
    assert sgd.optimizer_state == t.params and sgd.saved == t.saved
    assert cs.training_memory("resnet18", (3, 32, 32), batch_size=8).saved > 1.9 * sgd.saved
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        cs.summary("resnet18", training=True, optimizer="lbfgs")
    assert set(OPTIMIZERS) >= {"sgd", "plain_sgd", "adam", "adamw"}


def test_shared_and_frozen_parameters():
    """A module called twice: its parameters, gradients and state counted once; frozen
    parameters have no gradient and no optimizer state."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.head = nn.Conv2d(2, 1, 1)
            self.head.weight.requires_grad = False

        def forward(self, x):
            return self.head(self.conv(self.conv(x)))

    t = cs.training_memory(Twice(), (2, 6, 6), batch_size=2)
    conv, head = (2 * 2 * 9 + 2) * 4, (2 + 1) * 4
    assert t.params == conv + head and t.grads == conv + 4 and t.optimizer_state == conv + 4
    assert [m.name for m in t.layers if m.params] == ["conv", "head"]
    assert output_tensors  # the walk helpers stay importable for the per-layer split


@pytest.mark.parametrize("shape, filters", [((1, 99_999_999_999, 99_999_999_999), 8), ((1, 28, 28), 10**14)])
def test_memory_rules_size_a_huge_depthwise_conv_without_listing_its_taps(shape, filters):
    """A conv from one channel runs the compiled depthwise kernels; their memory rules size the
    plan from its shape alone: listing every tap's flat offset overflowed int64 on a huge input
    and took hours for 10¹⁴ filters."""
    pytest.importorskip("numba")
    from convscope.functional import jit

    with nn.meta_parameters():
        conv = nn.Conv2d(1, filters, 3, bias=False)
    with jit.enabled(True):
        s = cs.summary(conv, shape)
    out = [size - 2 for size in shape[1:]]
    assert s.ok and s.totals.macs == filters * out[0] * out[1] * 9
    assert s.totals.peak_activation_bytes >= 4 * filters * out[0] * out[1]


def test_memory_rules_of_a_huge_kernel_never_list_its_taps(monkeypatch):
    """A 10001×10001 kernel has 10⁸ taps: the memory rules size the conv's flat-tap plan from its
    shape alone (listing every tap's offset took 44 s and 4 GB; at 100001×100001 it was killed)."""
    from convscope.functional import conv as conv_module

    def listed(self):
        raise AssertionError("a memory rule listed the taps' offsets")

    monkeypatch.setattr(conv_module._FlatTaps, "offsets", property(listed))
    with nn.meta_parameters():
        net = nn.Sequential(nn.Conv2d(16, 4, 1), nn.Conv2d(4, 8, 10001, padding=5000))
    s = cs.summary(net, (16, 28, 28))
    assert s.ok and s.totals.macs == 4 * 16 * 28 * 28 + 8 * 4 * 10001**2 * 28 * 28


def _refuse_listing(monkeypatch):
    """Make the listings of work items that grow with the batch and the image (conv tiles,
    Winograd items, pooling's blocks of planes) fail: the memory rules must size them from
    their shape alone. (Norm layers' blocks of channels stay: their count is the channels'.)"""
    from convscope.functional import conv as conv_module
    from convscope.functional import pool as pool_module
    from convscope.functional import winograd as winograd_module

    def listed(*args, **kwargs):
        raise AssertionError("a memory rule listed the work items")

    for module, name in ((conv_module, "_tile_plan"), (winograd_module, "_items"), (pool_module, "even_blocks")):
        monkeypatch.setattr(module, name, listed)


@pytest.mark.parametrize("channels,stride", [(3, 2), (16, 1)])
def test_memory_rules_of_a_huge_input_never_list_its_tiles(channels, stride, monkeypatch):
    """A conv on 10⁶ × 10⁶ cells cuts into tens of millions of tiles: its memory rules count
    them and size the first and last without listing them (listing them filled 22 GB), so the
    summary answers at once, with the same rules as a small input."""
    _refuse_listing(monkeypatch)
    with nn.meta_parameters():
        net = nn.Sequential(nn.Conv2d(channels, 8, 3, stride=stride), nn.ReLU(), nn.Conv2d(8, 16, 3))
    s = cs.summary(net, (channels, 10**6, 10**6))
    first = (10**6 - 3) // stride + 1
    assert s.ok and s.totals.macs == 8 * channels * 9 * first**2 + 16 * 8 * 9 * (first - 2) ** 2
    assert s.totals.peak_activation_bytes >= 4 * 8 * first**2


def test_memory_rules_of_a_huge_batch_never_list_their_work(monkeypatch):
    """ResNet-18 at batch 10⁵ (Winograd convs, im2col convs, pooling): the summary's memory
    needs no list of tiles, items or blocks (it took 10 s listing them), and its first layer's
    activations are the batch-1 ones scaled."""
    one = cs.summary("resnet18")
    _refuse_listing(monkeypatch)
    s = cs.summary("resnet18", batch_size=10**5)
    assert s.ok and s.totals.macs == 10**5 * one.totals.macs
    assert s.totals.peak_activation_bytes >= 10**5 * one.rows[0].activation_bytes > 0
