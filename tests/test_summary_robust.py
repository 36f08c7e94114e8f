"""Reports that never half-fail: multi-input models, dict/list/tuple outputs, models in
training mode left exactly as found, a failing layer in a branching model, a forward that
reads values, and ONNX files summarised in a process where torch cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convscope as cs
from convscope import nn
from convscope.cli import main as cli_main


class TwoInputs(nn.Module):
    """An image and a mask: the mask is concatenated after a first conv; dict output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.drop = nn.Dropout(0.5)
        self.mix = nn.Conv2d(5, 6, 3, stride=2)
        self.head = nn.Linear(6, 2)

    def forward(self, image, mask):
        x = self.drop(self.bn(cs.cat([self.stem(image).relu(), mask], 1)))
        features = self.mix(x)
        return {"features": features, "logits": self.head(features.mean((2, 3))), "extra": [mask, (image,)]}


class Pair(nn.Module):
    """A list output and a tuple output from one shared conv."""

    def __init__(self, kind):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.kind = kind

    def forward(self, x):
        y = self.conv(x)
        return self.kind([y, self.conv(x[:, :, 1:, 1:]).tanh()])


def _state(model):
    """Everything a report must leave as it found: modes, parameters and buffers, gradients,
    requires_grad flags, hooks, the global random state."""
    return (json.dumps(cs.random.get_rng_state()),
            [(m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()],
            {k: v.copy() for k, v in model.state_dict().items()},
            [(p.requires_grad, None if p.grad is None else p.grad.copy()) for p in model.parameters()])


def _same(a, b):
    assert a[0] == b[0] and a[1] == b[1]
    assert a[2].keys() == b[2].keys() and all(np.array_equal(a[2][k], b[2][k]) for k in a[2])
    assert [(r, g is None) for r, g in a[3]] == [(r, g is None) for r, g in b[3]]
    assert all(g is None or np.array_equal(g, h) for (_, g), (_, h) in zip(a[3], b[3]))


def test_multi_input_dict_output_end_to_end():
    cs.manual_seed(0)
    model = TwoInputs().train()
    model.stem.register_forward_hook(lambda m, a, o: None)
    model.head.weight.grad = np.ones(model.head.weight.shape, np.float32)
    before = _state(model)
    s = cs.summary(model, inputs=[(3, 12, 12), (1, 12, 12)], training=True, batch_size=4)
    _same(before, _state(model))
    assert s.ok and s.input_shapes == [(4, 3, 12, 12), (4, 1, 12, 12)]
    rows = {r.name: r for r in s.rows}
    assert rows["mix"].output_shape == (4, 6, 5, 5) and rows["head"].output_shape == (4, 2)
    assert rows["cat"].input_shapes == [(4, 4, 12, 12), (4, 1, 12, 12)]
    # the mask reaches the cat unchanged: the union of a 3×3 field and a 1×1 one is 3×3
    assert rows["mix"].receptive_field[0].size == 5 and rows["mix"].receptive_field[0].jump == 2
    outputs = 4 * (6 * 25 + 2 + 144 + 3 * 144) * 4
    assert s.totals.output_bytes == outputs
    t = s.training
    assert t.params == 4 * sum(p.numel() for p in model.parameters())
    assert sum(m.saved for m in t.layers) == t.saved and t.layers[0].saved == 4 * (3 + 1) * 144 * 4
    d = json.loads(s.to_json())
    assert d["input_shapes"] == [[4, 3, 12, 12], [4, 1, 12, 12]] and d["training"]["batch_size"] == 4
    assert "input 4×3×12×12, 4×1×12×12" in str(s) and s.to_csv().count("\n") == len(s.rows) + 1
    # the real forward agrees with the rows
    out = model.eval()(cs.tensor(np.zeros((4, 3, 12, 12), np.float32)), cs.tensor(np.zeros((4, 1, 12, 12), np.float32)))
    assert out["features"].shape == rows["mix"].output_shape
    with pytest.raises(ValueError, match="erf=True follows one input's gradient; TwoInputs takes 2 inputs"):
        cs.summary(model, inputs=[(3, 12, 12), (1, 12, 12)], erf=True)


@pytest.mark.parametrize("kind", [list, tuple])
def test_list_and_tuple_outputs_with_shared_module(kind):
    model = Pair(kind)
    before = _state(model)
    s = cs.summary(model, (1, 9, 9), training=True, optimizer="adam", erf=True)
    _same(before, _state(model))
    assert s.ok and [(r.name, r.use) for r in s.rows if r.type == "Conv2d"] == [("conv", 1), ("conv#2", 2)]
    assert s.totals.output_bytes == (2 * 49 + 2 * 36) * 4
    assert s.training.params == 20 * 4 and s.training.optimizer_state == 2 * 20 * 4
    assert s.erf is not None and s.erf.theoretical == (3, 3)


def test_train_mode_model_with_erf_and_training_left_untouched():
    cs.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.3), nn.ReLU(),
                          nn.Conv2d(4, 2, 3)).train()
    model[0].weight.requires_grad = False
    before = _state(model)
    s = cs.summary(model, (1, 16, 16), training=True, erf=True)
    _same(before, _state(model))
    assert s.training.grads == (4 + 4 + 4 + 2 * 4 * 9 + 2) * 4  # the frozen weight has no gradient
    assert s.erf.box[0] <= 5


class Branchy(nn.Module):
    def __init__(self, wrong):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.Conv2d(3 if wrong else 2, 2, 1))
        self.head = nn.Conv2d(4, 1, 3)

    def forward(self, x):
        return self.head(cs.cat([self.a(x), self.b(x)], 1))


def test_failing_layer_in_a_branch_keeps_the_table_and_names_layer_rule_numbers(capsys):
    model = Branchy(wrong=True)
    before = _state(model)
    s = cs.summary(model, (1, 10, 10), training=True)
    _same(before, _state(model))
    assert not s.ok and s.training is None
    assert [r.name for r in s.rows] == ["a.0", "a.1", "b.0", "b.1"]
    message = str(s.error)
    assert "b.2 (Conv2d)" in message and "expected input with 3 channels, got 2" in message
    table = str(s)
    assert "b.1 (ReLU)" in table and f"Error: {message}" in table
    with pytest.raises(cs.ShapeError, match=r"b\.2 \(Conv2d\)"):
        s.raise_for_error()
    assert cs.summary(Branchy(wrong=False), (1, 10, 10)).ok


def test_cli_prints_the_partial_table_and_the_error_once_on_stderr_then_exits_2(capsys):
    """GoogLeNet (training mode, batch 1) at 16×16: inception 4a's 1×1 branch sees a single
    value per channel, which batch norm refuses; the inception 3a and 3b rows before it stay."""
    code = cli_main(["summary", "googlenet", "--input", "3x16x16", "--training"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert "inception3b.branch4.1.conv (Conv…" in out and "inception3b.cat (cat)" in out
    lines = out.splitlines()
    last_row = lines[[i for i, line in enumerate(lines) if line.startswith("───")][1] - 1]
    assert last_row.split() == ["inception4a.branch1.conv", "(Conv2d)", "192×1×1", "92,160", "92.16K", "75"]
    message = ("inception4a.branch1.bn (BatchNorm2d): Expected more than 1 value per channel when training, "
               "got input size (1, 192, 1, 1)")
    assert message not in out and err.strip() == f"convscope summary: error: {message}"


def test_a_forward_that_reads_values_stops_the_report_at_that_layer():
    class Reads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.gate = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return self.gate(y) if y.sum().item() > 0 else y

    s = cs.summary(Reads(), (1, 8, 8))
    assert not s.ok and [r.name for r in s.rows] == ["conv", "sum"]
    assert "Reads: cannot run on shapes alone: ValueError" in str(s.error) and "meta tensor" in str(s.error)
    assert isinstance(s.error.__cause__, ValueError)


# --- ONNX without torch -------------------------------------------------------------------------
NO_TORCH = textwrap.dedent("""
    import json, sys
    sys.modules["torch"] = None  # any import of torch now fails
    import convscope as cs
    s = cs.summary(sys.argv[1], training=True)
    print(json.dumps({"ok": s.ok, "error": None if s.ok else str(s.error), "inputs": s.input_shapes,
                      "params": s.totals.params, "macs": s.totals.macs, "peak": s.totals.peak_activation_bytes,
                      "saved": s.training.saved if s.training else None,
                      "shapes": {r.name: r.output_shape for r in s.rows},
                      "torch": [m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None]}))
""")


def _summarise_without_torch(path):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_onnx_file_summarised_without_torch_matches_the_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    cs.manual_seed(0)
    model = cs.zoo.build("resnet18")
    path = tmp_path / "resnet18.onnx"
    cs.export_onnx(model, path, (3, 32, 32), batch_size=2)
    got = _summarise_without_torch(path)
    ours = cs.summary(model, (2, 3, 32, 32), training=True)
    assert got["ok"] and got["torch"] == []
    assert got["inputs"] == [[2, 3, 32, 32]]  # the graph's own input shape, batch included
    assert (got["params"], got["macs"]) == (ours.totals.params, ours.totals.macs)
    assert got["peak"] == ours.totals.peak_activation_bytes
    # every node output shape equals ONNX's own shape inference
    loaded = cs.load_onnx(path)
    inferred = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph.value_info}
    checked = 0
    for step in loaded.steps:
        if step.module in got["shapes"] and step.outputs[0] in inferred:
            assert got["shapes"][step.module] == inferred[step.outputs[0]], step.node
            checked += 1
    assert checked >= 40


def test_onnx_file_without_shapes_uses_symbols_and_shape_inference(tmp_path):
    """A file with no intermediate shapes and a symbolic batch and spatial size: the report
    takes batch 1 and the sizes as symbols (at a reference size), and the output shape it
    computes is what ONNX shape inference derives for that input."""
    onnx = pytest.importorskip("onnx")
    cs.manual_seed(0)
    path = tmp_path / "seed.onnx"
    proto = cs.export_onnx(cs.zoo.build("seed"), path, (1, 28, 28))
    del proto.graph.value_info[:]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for k, name in ((0, "N"), (2, "height"), (3, "width")):
        dims[k].ClearField("dim_value")
        dims[k].dim_param = name
    for d in proto.graph.output[0].type.tensor_type.shape.dim:
        d.ClearField("dim_value")
    onnx.save(proto, str(path))
    got = _summarise_without_torch(path)
    assert got["ok"] and got["torch"] == []
    (n, c, h, w), = got["inputs"]
    assert (n, c) == (1, 1) and h == w
    fixed = onnx.load(str(path))
    for k, v in ((0, n), (2, h), (3, w)):
        fixed.graph.input[0].type.tensor_type.shape.dim[k].dim_value = v
    inferred = onnx.shape_inference.infer_shapes(fixed).graph.output[0].type.tensor_type.shape.dim
    assert list(got["shapes"].values())[-1] == [d.dim_value for d in inferred] == [1, 16, h - 4, w - 4]
    s = cs.summary(path)
    assert s.symbolic is not None and s.rows[-1].output_formula == ["16", "H − 4", "W − 4"]


def test_batch_size_is_applied_or_refused_never_ignored(tmp_path):
    """``batch_size`` (``--batch-size``) was silently dropped for an ONNX file (its graph's
    batch won, so ``--training --batch-size 8`` counted batch 2) and for a shape that has a
    batch: a symbolic batch takes it, a different fixed batch is an error."""
    onnx = pytest.importorskip("onnx")
    cs.manual_seed(0)
    path = tmp_path / "seed.onnx"
    proto = cs.export_onnx(cs.zoo.build("seed"), path, (1, 12, 12), batch_size=2)
    assert cs.summary(path, batch_size=2).input_shapes == [(2, 1, 12, 12)]
    with pytest.raises(ValueError, match="seed.onnx's input 'input' has a fixed batch of 2, not batch_size=8"):
        cs.summary(path, training=True, batch_size=8)
    assert cli_main(["summary", str(path), "--batch-size", "8"]) == 2
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(proto, str(tmp_path / "any.onnx"))
    assert cs.summary(tmp_path / "any.onnx", batch_size=8).input_shapes == [(8, 1, 12, 12)]
    with pytest.raises(ValueError, match=r"input shape \(2, 1, 12, 12\) already has a batch of 2, not batch_size=8"):
        cs.summary("seed", (2, 1, 12, 12), batch_size=8)
    assert cs.summary("seed", (8, 1, 12, 12), batch_size=8).input_shapes == [(8, 1, 12, 12)]
    assert cs.training_memory("seed", (8, 1, 12, 12)).batch_size == cs.training_memory(path).batch_size * 4 == 8


def test_cli_output_into_a_closed_pipe_stops_quietly():
    """``convscope summary resnet152 | head -3``: once the reader has closed the pipe, the CLI
    stops without an error message, with status 141 (as a writer stopped by SIGPIPE)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write: every write fails
    try:
        result = subprocess.run([sys.executable, "-m", "convscope.cli", "summary", "resnet152"], stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert result.stderr == ""
    assert result.returncode == 141


def test_summary_runs_in_eval_mode_by_default_and_restores_the_flags(capsys):
    """Batch norm in training mode refuses one value per channel: ResNet-18 at 32×32 (layer4
    at 1×1) failed under the zoo's training-mode build; torchinfo summarises in eval mode too."""
    assert cli_main(["summary", "resnet18", "--input", "3x32x32"]) == 0
    assert "Params: 11,689,512" in capsys.readouterr().out
    model = cs.zoo.build("resnet18")
    model.layer1.eval()  # mixed flags come back as they were
    flags = [m.training for m in model.modules()]
    assert cs.summary(model, (3, 32, 32)).ok
    assert not cs.summary(model, (3, 32, 32), mode="train").ok  # the guard, in training mode
    assert not cs.summary(model, (3, 32, 32), mode=None).ok  # the model's own (training) flags
    assert [m.training for m in model.modules()] == flags
    with pytest.raises(ValueError, match="summary: mode must be 'eval', 'train' or None, got 'test'"):
        cs.summary(model, (3, 32, 32), mode="test")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy ONNX exporter
@pytest.mark.parametrize("kind", ["pool_first", "mlp"])
def test_batched_shapes_and_onnx_files_get_no_second_batch(kind, tmp_path):
    """A batched input shape is used as given when the model's first rank-fixing layer is a
    pool, and an ONNX file's declared shape (batch included) is never batched again: every
    row's output shape is the one torch's own forward hooks see."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    tnn = torch.nn
    if kind == "pool_first":
        model, shape = tnn.Sequential(tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(12, 3)), (4, 3, 4, 4)
    else:
        model, shape = tnn.Sequential(tnn.Linear(20, 10), tnn.ReLU(), tnn.Linear(10, 3)), (4, 20)
    model.eval()
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape))) for m in model]
    with torch.no_grad():
        model(torch.zeros(shape))
    for hook in hooks:
        hook.remove()
    path = tmp_path / f"{kind}.onnx"
    torch.onnx.export(model, (torch.zeros(shape),), str(path), input_names=["input"], dynamo=False)
    reports = [cs.summary(path)] + ([cs.summary(cs.from_torch(model), shape)] if kind == "pool_first" else [])
    for s in reports:
        assert s.error is None
        assert [tuple(s.input_shapes[0])] == [shape]
        assert [tuple(r.output_shape) for r in s.rows] == seen


@pytest.mark.parametrize("layer, shape, message", [
    (lambda: cs.nn.Conv2d(3, 4, 3), (3, 10), r"input shape 3×10 has 2 dim\(s\), .* \(Conv2d\), takes 3 per sample "
                                              r"\(C×H×W\), or 4 with the batch"),
    (lambda: cs.nn.Conv1d(3, 4, 3), (10,), r"takes 2 per sample \(C×L\)"),
    (lambda: cs.nn.MaxPool3d(2), (4, 4, 4), r"takes 4 per sample \(C×D×H×W\)"),
])
def test_an_input_shape_too_short_for_one_sample_is_refused(layer, shape, message) -> None:
    """A batch of 1 made ``3×10`` a 1×3×10 input, which a 2-d conv reads as one unbatched
    sample of one channel: the error then said "give it 3 channels" to a user who had."""
    with pytest.raises(ValueError, match=message):
        cs.summary(cs.nn.Sequential(layer()), shape)


def test_batch_norm_1d_takes_features_without_length() -> None:
    assert cs.summary(cs.nn.Sequential(cs.nn.BatchNorm1d(3)), (3,)).rows[0].output_shape == (1, 3)


@pytest.mark.parametrize("given", [None, (100,), (4, 100)])
def test_a_spec_unflattening_its_features_before_a_conv_is_batched_by_its_input_line(given) -> None:
    """A DCGAN-style generator, ``input 100`` then linear, unflatten, transposed convs: the
    first rank-fixing layer (a 2-d batch norm) wanted 3 dims per sample, and ``100`` was
    refused as too short; the spec's input line says a sample has 1. Rows match torch's hooks."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    spec = "input 100\nfc 1024\nunflatten 64x4x4\nbn\nrelu\ndeconv 32 k4 s2 p1\nrelu\ndeconv 1 k4 s2 p1\ntanh\n"
    model = tnn.Sequential(tnn.Linear(100, 1024), tnn.Unflatten(1, (64, 4, 4)), tnn.BatchNorm2d(64), tnn.ReLU(),
                           tnn.ConvTranspose2d(64, 32, 4, 2, 1), tnn.ReLU(), tnn.ConvTranspose2d(32, 1, 4, 2, 1),
                           tnn.Tanh()).eval()
    batch = 4 if given == (4, 100) else 1
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape))) for m in model]
    with torch.no_grad():
        model(torch.zeros(batch, 100))
    for hook in hooks:
        hook.remove()
    s = cs.summary(spec, given)
    assert s.error is None and s.input_shapes[0] == (batch, 100)
    assert [tuple(r.output_shape) for r in s.rows] == seen
    assert [r.params for r in s.rows] == [sum(p.numel() for p in m.parameters()) for m in model]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy ONNX exporter
def test_a_float64_model_is_summarised_on_float64_inputs(tmp_path) -> None:
    """A ``.double()`` torch module, its convscope twin and its float64 ONNX file were walked
    on float32 meta inputs, and every one failed on the first conv's dtype check."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    tnn = torch.nn
    model = tnn.Sequential(tnn.Conv2d(1, 4, 3), tnn.ReLU(), tnn.Flatten(), tnn.Linear(4 * 6 * 6, 3)).double().eval()
    path = tmp_path / "double.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8, dtype=torch.float64),), str(path), input_names=["input"],
                      dynamo=False)
    params = sum(p.numel() for p in model.parameters())
    for s in (cs.summary(model, (1, 8, 8)), cs.summary(cs.from_torch(model), (1, 8, 8)), cs.summary(path),
              cs.summary(model, (1, 8, 8), training=True)):
        assert s.error is None and s.totals.params == params
        assert s.totals.param_bytes == 8 * params and s.totals.input_bytes == 8 * 64
    assert cs.training_memory(model, (1, 8, 8)).params == 8 * params
    assert cs.summary(model, (1, 8, 8), dtype=np.float32).error is not None  # what the caller asked for

@pytest.mark.parametrize("raised, shown", [(MemoryError(), ""), (MemoryError("Unable to allocate 335. GiB"),
                                                                    " (Unable to allocate 335. GiB)")])
def test_cli_reports_running_out_of_memory_in_one_line(raised, shown, monkeypatch, capsys):
    """A MemoryError (numpy's names the size; ``tuple(range(5·10¹⁰))``'s, raised by the memory
    rules' tile list for a 3×10¹¹×10¹¹ input, says nothing) is one line and exit 2, not a traceback."""
    import convscope.analyze

    def exhausted(*args, **kwargs):
        raise raised

    monkeypatch.setattr(convscope.analyze, "summary", exhausted)
    code = cli_main(["summary", "lenet5"])
    err = capsys.readouterr().err
    assert code == 2 and err == f"convscope summary: error: out of memory{shown}; try a smaller input or model\n"
