"""The spreadsheet export, recomputed by engines other than convscope.

LibreOffice Calc (headless, forced to recalculate on load) opens every exported workbook —
one start-up for all of them — and saves its computed values; pycel, a pure-Python Excel
formula evaluator, recomputes the small workbook as a second, independent check. Every
formula cell of each workbook is compared with the engine's value of the tensor element it
stands for: the trained digits CNN (float32 engine within 1e-5, and the same weights run in
float64 within 1e-9), the digits workbook after its input was edited with openpyxl, and a
float64 spec model with every padding mode, groups, strides, average/max pooling with
padding and ceil mode, Tanh and Sigmoid.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import convscope as cs
from convscope.data import digits
from convscope.export import XlsxExport, export_xlsx
from convscope.export.cli import add_cli
from convscope.export.plan import plan_workbook
from convscope.export.sheetgrid import a1

openpyxl = pytest.importorskip("openpyxl", reason="the xlsx export needs openpyxl (pip install 'convscope[xlsx]')")

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
NO_LIBREOFFICE = "LibreOffice is not installed (apt-get install -y --no-install-recommends libreoffice-calc)"

SMALL_SPEC = """
input 2x9x9
conv 4 k3 p1                              # zero padding
tanh
conv 4 k3 p1 g2 reflect                   # grouped, reflect padding
sigmoid
avgpool k3 s2 p1 ceil count_include_pad=off
conv 6 k2 p=same replicate                # asymmetric 'same' padding
conv 6 k3 s2 p1 circular                  # stride 2
maxpool k2 s2 p1 ceil
avgpool k2 s1 divisor=3
flatten
linear 5
relu
linear 3
"""

# Forces LibreOffice to recompute every formula on load instead of trusting cached values.
RECALC_ALWAYS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">
<value>0</value></prop></item>
</oor:items>
"""

Cell = tuple[str, int, int]


# --- the workbooks and their recalculation ------------------------------------------------------------
def _small_model() -> cs.nn.Module:
    cs.manual_seed(0)
    return cs.load_spec(SMALL_SPEC).double()


def _small_input() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 9, 9))


def _edit_input(source: Path, target: Path, export: XlsxExport, image: np.ndarray) -> None:
    """Overwrite the input sheet's values with openpyxl, as a user would in a spreadsheet."""
    book = openpyxl.load_workbook(source)
    table = export.sheets[0].tables[0]
    sheet = book[export.sheets[0].title]
    for index in np.ndindex(*table.content.shape):
        sheet.cell(int(table.grid.rows[index]), int(table.grid.cols[index])).value = float(image[index])
    book.save(target)


@pytest.fixture(scope="module")
def workbooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The exports (digits on test image 0, small spec model) and the digits workbook with its
    input replaced by a test image the model classifies differently."""
    folder = tmp_path_factory.mktemp("xlsx")
    images, _ = digits("test")
    net = cs.pretrained("digits")
    first = export_xlsx(net, images[0], folder / "digits.xlsx")
    with cs.no_grad():
        predictions = net(cs.tensor(images)).numpy().argmax(1)
    other = int(np.flatnonzero(predictions != first.prediction)[0])
    _edit_input(first.path, folder / "edited.xlsx", first, images[other])
    small = export_xlsx(_small_model(), _small_input(), folder / "small.xlsx")
    return {"digits": first, "small": small, "edited": folder / "edited.xlsx", "other": other, "images": images}


def _values(path: Path) -> dict[Cell, Any]:
    """Every non-empty cell's saved value, by (sheet, row, column)."""
    book = openpyxl.load_workbook(path, data_only=True, read_only=True)
    try:
        return {(ws.title, c.row, c.column): c.value for ws in book for row in ws.iter_rows() for c in row
                if c.value is not None}
    finally:
        book.close()


def _formula_cells(path: Path) -> set[Cell]:
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return {(ws.title, c.row, c.column) for ws in book for row in ws.iter_rows() for c in row
                if isinstance(c.value, str) and c.value.startswith("=")}
    finally:
        book.close()


@pytest.fixture(scope="module")
def libreoffice(workbooks: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[Cell, Any]]:
    """The three workbooks as LibreOffice computed them (one conversion run)."""
    if SOFFICE is None:
        pytest.skip(NO_LIBREOFFICE)
    folder = tmp_path_factory.mktemp("libreoffice")
    profile = folder / "profile"
    (profile / "user").mkdir(parents=True)
    (profile / "user" / "registrymodifications.xcu").write_text(RECALC_ALWAYS)
    sources = {"digits": workbooks["digits"].path, "small": workbooks["small"].path, "edited": workbooks["edited"]}
    run = subprocess.run([SOFFICE, "--headless", "--norestore", "--nolockcheck",
                          f"-env:UserInstallation={profile.as_uri()}", "--convert-to", "xlsx:Calc MS Excel 2007 XML",
                          "--outdir", str(folder / "out"), *map(str, sources.values())],
                         capture_output=True, text=True, timeout=300)
    out = {name: folder / "out" / path.name for name, path in sources.items()}
    missing = [str(p) for p in out.values() if not p.exists()]
    assert run.returncode == 0 and not missing, f"LibreOffice failed: {run.stdout} {run.stderr} (missing {missing})"
    return {name: _values(path) for name, path in out.items()}


def _pycel(path: Path, cells: set[Cell]) -> dict[Cell, Any]:
    """``cells`` of the workbook at ``path`` as pycel computes them from the formulas."""
    from pycel import ExcelCompiler

    compiler = ExcelCompiler(filename=str(path))
    return {cell: compiler.evaluate(f"'{cell[0]}'!{a1(cell[1], cell[2])}") for cell in cells}


def _recalculated(evaluator: str, name: str, workbooks: dict[str, Any], request: pytest.FixtureRequest
                  ) -> dict[Cell, Any]:
    if evaluator == "libreoffice":
        return request.getfixturevalue("libreoffice")[name]
    pytest.importorskip("pycel", reason="pycel is not installed (pip install pycel), the pure-Python evaluator")
    export = workbooks[name]
    return _pycel(export.path, {(t, r, c) for t, r, c, _ in export.formula_cells()})


def _compare(export: XlsxExport, computed: dict[Cell, Any], rtol: float, *, plan: Any = None) -> int:
    """Assert every formula cell equals the engine's value (``plan``'s, default the export's)
    within ``rtol`` of the value or of its table's largest magnitude; return the count."""
    sheets = (plan or export).sheets
    checked = 0
    for sheet in sheets:
        for table in sheet.tables:
            if table.expected is None:
                continue
            cells = [(index, (sheet.title, int(table.grid.rows[index]), int(table.grid.cols[index])))
                     for index, _ in table.formulas()]
            got = np.array([computed.get(cell) for _, cell in cells], dtype=object)
            missing = [cell for (_, cell), v in zip(cells, got) if not isinstance(v, (int, float))]
            assert not missing, f"{sheet.title}: no computed number in {missing[:3]} (got {got[:3]})"
            want = np.array([table.expected[index] for index, _ in cells])
            got = got.astype(np.float64)
            scale = float(np.abs(table.expected).max(initial=0.0))
            bad = np.abs(got - want) > rtol * (np.abs(want) + scale)
            if bad.any():
                k = int(np.argmax(bad))
                pytest.fail(f"{sheet.title} {cells[k][0]} at {a1(*cells[k][1][1:])}: spreadsheet {got[k]!r}, "
                            f"engine {want[k]!r} ({int(bad.sum())} of {len(cells)} cells differ)")
            checked += len(cells)
    return checked


# --- recomputed by another engine ---------------------------------------------------------------------
def test_the_digits_cnn_recomputed_by_libreoffice(workbooks: dict[str, Any], libreoffice: dict) -> None:
    export, computed = workbooks["digits"], libreoffice["digits"]
    assert _compare(export, computed, 1e-5) == export.n_formulas > 11_000
    # the same weights in float64: the spreadsheet's arithmetic is the network's, not an approximation
    plan64 = plan_workbook(cs.pretrained("digits").double(), workbooks["images"][0])
    assert _compare(export, computed, 1e-9, plan=plan64) == export.n_formulas
    assert computed["prediction", 6, 7] == export.prediction == plan64.prediction


def test_editing_an_input_pixel_recomputes_the_prediction(workbooks: dict[str, Any], libreoffice: dict) -> None:
    """The input sheet of the digits workbook overwritten with another test image (with
    openpyxl), recalculated by LibreOffice: every cell follows the engine on the new image."""
    export, computed = workbooks["digits"], libreoffice["edited"]
    image = workbooks["images"][workbooks["other"]]
    plan = plan_workbook(cs.pretrained("digits"), image)
    assert _compare(export, computed, 1e-5, plan=plan) == export.n_formulas
    assert computed["prediction", 6, 7] == plan.prediction != export.prediction


@pytest.mark.parametrize("evaluator", ["libreoffice", "pycel"])
def test_a_spec_model_with_every_padding_and_pool_recomputed(evaluator: str, workbooks: dict[str, Any],
                                                             request: pytest.FixtureRequest) -> None:
    export = workbooks["small"]
    computed = _recalculated(evaluator, "small", workbooks, request)
    assert _compare(export, computed, 1e-9) == export.n_formulas
    formulas = [f for sheet in export.sheets for t in sheet.tables for _, f in t.formulas()]
    for piece in ("AVERAGE(", ")/3", "MAX(", "TANH(", "1/(1+EXP(-", "MAX(0,"):
        assert any(piece in f for f in formulas), f"no formula uses {piece}"
    assert any(f.startswith("=SUM(") and not f.endswith(")/3") for f in formulas)  # count_include_pad=off edges
    assert computed["prediction", 6, 7] == export.prediction


@pytest.mark.slow
def test_the_digits_cnn_recomputed_by_pycel(workbooks: dict[str, Any], request: pytest.FixtureRequest) -> None:
    """The second evaluator on the big workbook (about 90 s: marked slow)."""
    export = workbooks["digits"]
    assert _compare(export, _recalculated("pycel", "digits", workbooks, request), 1e-5) == export.n_formulas


# --- what the workbook holds --------------------------------------------------------------------------
def test_every_formula_cell_is_checked_and_none_has_a_cached_value(workbooks: dict[str, Any]) -> None:
    """The comparisons cover every formula in the files, and openpyxl saved no values for
    them: whatever number a formula cell shows was computed by the evaluator."""
    for name in ("digits", "small"):
        export = workbooks[name]
        in_file = _formula_cells(export.path)
        assert in_file == {(t, r, c) for t, r, c, _ in export.formula_cells()}
        saved = _values(export.path)
        assert not in_file & set(saved)


def test_conv_formula_sums_over_all_input_channels(workbooks: dict[str, Any]) -> None:
    """Output (5, 3, 4) of the digits model's 32 → 32 3×3 conv: bias + 32 SUMPRODUCTs, one per
    input channel, each a 3×3 window of the padded input against weight[5, c]."""
    export = workbooks["digits"]
    sheets = {s.title: s for s in export.sheets}
    formula = sheets["2 Conv2d"].tables[0].content[5, 3, 4]
    terms = formula[1:].split("+")
    assert len(terms) == 33 and terms[-1] == f"'2 Conv2d bias'!B{3 + 5}"
    padded = sheets["2 Conv2d padded"].tables[0].grid
    kernels = sheets["2 Conv2d weight"].tables[0].grid
    for c, term in enumerate(terms[:-1]):
        window = f"{a1(padded.rows[c, 3, 4], padded.cols[c, 3, 4])}:{a1(padded.rows[c, 5, 6], padded.cols[c, 5, 6])}"
        kernel = f"{a1(kernels.rows[5, c, 0, 0], kernels.cols[5, c, 0, 0])}:" \
                 f"{a1(kernels.rows[5, c, 2, 2], kernels.cols[5, c, 2, 2])}"
        assert term == f"SUMPRODUCT('2 Conv2d padded'!{window},'2 Conv2d weight'!{kernel})"
    # the padded copy: zeros around, references to the ReLU output inside
    content = sheets["2 Conv2d padded"].tables[0].content
    assert content[0, 0, 0] == 0.0 and content[7, 9, 4] == 0.0
    relu = sheets["1 ReLU"].tables[0].grid
    assert content[7, 1, 1] == f"='1 ReLU'!{a1(relu.rows[7, 0, 0], relu.cols[7, 0, 0])}"


def test_sheets_follow_the_network(workbooks: dict[str, Any]) -> None:
    titles = [s.title for s in workbooks["digits"].sheets]
    assert titles == ["input", "0 Conv2d weight", "0 Conv2d bias", "0 Conv2d padded", "0 Conv2d", "1 ReLU",
                      "2 Conv2d weight", "2 Conv2d bias", "2 Conv2d padded", "2 Conv2d", "3 ReLU", "4 MaxPool2d",
                      "5 Flatten", "6 Linear weight", "6 Linear bias", "6 Linear", "7 ReLU", "8 Linear weight",
                      "8 Linear bias", "8 Linear", "prediction"]
    book = openpyxl.load_workbook(workbooks["digits"].path, read_only=True)
    try:
        assert book.sheetnames == titles
        assert book["0 Conv2d"]["B3"].value == "channel 0"
    finally:
        book.close()


# --- refusals --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, match", [
    ("input 1x6x6\nconv 2 k3\nbn\nflatten\nlinear 2", r"layer 'bn1' \(BatchNorm2d\) has no spreadsheet form"),
    ("input 1x6x6\nconv 2 k3 d2\nflatten\nlinear 2", r"'conv1' \(Conv2d\) has dilation \(2, 2\)"),
    ("input 1x6x6\nmaxpool k2 d2\nflatten\nlinear 2", r"'maxpool1' \(MaxPool2d\) has dilation \(2, 2\)"),
    ("input 1x6x6\nresidual { conv 1 k3 p1 }\nflatten\nlinear 2", r"'block1' \(Residual\) has no spreadsheet"),
    ("input 1x6x6\nconv 2 k3", r"must end in class scores .* outputs \(1, 2, 4, 4\)"),
    ("input 1x6x6\nconv 2 k3\nlinear 2", r"'fc1' \(Linear\) needs an \(F,\) vector .* put a Flatten before it"),
], ids=["batchnorm", "dilated-conv", "dilated-pool", "residual", "no-scores", "linear-on-maps"])
def test_unsupported_models_are_refused_by_name(spec: str, match: str, tmp_path: Path) -> None:
    model = cs.load_spec(spec)
    with pytest.raises(ValueError, match=match):
        export_xlsx(model, np.zeros((1, 6, 6), np.float32), tmp_path / "m.xlsx")
    assert list(tmp_path.iterdir()) == []


def _onnx_of(model: Any, shape: tuple[int, ...], path: Path) -> Any:
    """``model`` (a torch module) exported to ONNX at ``path`` and loaded back."""
    import io
    import warnings

    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros((1, *shape)),), buffer, dynamo=False, opset_version=13,
                          input_names=["input"])
    path.write_bytes(buffer.getvalue())
    return cs.load_onnx(path)


def test_an_onnx_chain_of_layers_is_exported_as_its_layers(tmp_path: Path) -> None:
    """An ONNX file of a sequential classifier (Conv, Relu, MaxPool, Tanh, Flatten, Gemm nodes)
    gets the workbook of those layers: its logits are torch's on the same weights, with one
    sheet per layer as for the same model built in convscope."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(16, 5))
    x = np.random.default_rng(0).standard_normal((1, 8, 8)).astype(np.float32)
    plan = plan_workbook(_onnx_of(net, (1, 8, 8), tmp_path / "chain.onnx"), x)
    want = net(torch.from_numpy(x[None])).detach().numpy()[0]
    np.testing.assert_allclose(plan.logits, want, rtol=1e-5, atol=1e-6)
    assert len(plan.sheets) == len(plan_workbook(cs.from_torch(net, (1, 8, 8)), x).sheets)


def test_an_onnx_graph_that_is_not_a_chain_is_refused_naming_the_node(tmp_path: Path) -> None:
    import torch

    class Skip(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Linear(36, 2)

        def forward(self, x: Any) -> Any:
            return self.fc(torch.flatten(self.conv(x) + x, 1))

    model = _onnx_of(Skip(), (1, 6, 6), tmp_path / "skip.onnx")
    with pytest.raises(ValueError, match=r"export_xlsx: ONNX node '.*Add' \(Add\) reads .* the graph is not a chain"):
        export_xlsx(model, np.zeros((1, 6, 6), np.float32), tmp_path / "m.xlsx")
    assert not (tmp_path / "m.xlsx").exists()


def test_a_formula_longer_than_excel_allows_is_refused(tmp_path: Path) -> None:
    """A 3×3 conv over 150 channels needs 150 SUMPRODUCTs in one cell: over 8,192 characters."""
    model = cs.load_spec("input 150x3x3\nconv 1 k3\nflatten\nlinear 2")
    with pytest.raises(ValueError, match=r"'conv1' \(Conv2d\): a cell formula would be 8,\d{3} characters, over the "
                                         r"8,192 that Excel accepts"):
        export_xlsx(model, np.zeros((150, 3, 3), np.float32), tmp_path / "m.xlsx")
    model = cs.load_spec("input 100x3x3\nconv 1 k3\nflatten\nlinear 2")  # 5,850 characters: fine
    written = export_xlsx(model, np.zeros((100, 3, 3), np.float32), tmp_path / "m.xlsx")
    assert written.n_formulas == 1 + 1 + 2 + 3 * 2 + 4  # conv, flatten, linear, prediction sheet


def test_bad_inputs_and_paths_are_refused(tmp_path: Path) -> None:
    net = cs.pretrained("digits")
    x = np.zeros((1, 8, 8), np.float32)
    cases = [(np.zeros((2, 1, 8, 8)), "a batch of 2"), (np.full((1, 8, 8), np.nan), "1 non-finite|64 non-finite"),
             (np.zeros((8, 8)), r"got shape \(8, 8\); a single-channel image needs its channel dim")]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            export_xlsx(net, bad, tmp_path / "m.xlsx")
    with pytest.raises(cs.ShapeError):
        export_xlsx(net, np.zeros((3, 8, 8)), tmp_path / "m.xlsx")
    with pytest.raises(ValueError, match="must be an .xlsx file"):
        export_xlsx(net, x, tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_xlsx(net, x, tmp_path / "nope" / "m.xlsx")
    with pytest.raises(ValueError, match="expected an nn.Sequential"):
        export_xlsx(cs.nn.Linear(2, 2), np.zeros(2), tmp_path / "m.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_the_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed save leaves an existing file as it was and no temporary file behind."""
    target = tmp_path / "m.xlsx"
    target.write_bytes(b"old")

    def broken(self: Any, filename: str) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(openpyxl.Workbook, "save", broken)
    with pytest.raises(OSError, match=f"cannot write {target}: disk full$"):  # the target, not the temporary file
        export_xlsx(cs.load_spec("input 1x4x4\nflatten\nlinear 2"), np.zeros((1, 4, 4), np.float32), target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.xlsx"]


def test_importing_convscope_does_not_import_openpyxl() -> None:
    code = "import sys, convscope, convscope.export; print('openpyxl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- the command ------------------------------------------------------------------------------------------
def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="convscope")
    add_cli(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_exports_the_digits_model_and_a_spec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "digits.xlsx"
    args = _cli(["export-xlsx", "--digit", "5", "-o", str(out)])
    assert args.run(args) == 0
    text = capsys.readouterr().out
    images, _ = digits("test")
    with cs.no_grad():
        predicted = int(cs.pretrained("digits")(cs.tensor(images[5:6])).numpy().argmax())
    assert out.exists() and f"predicts class {predicted}" in text and "21 sheets" in text
    spec = tmp_path / "small.spec"
    spec.write_text(textwrap.dedent(SMALL_SPEC))
    np.savez(tmp_path / "x.npz", image=_small_input())
    args = _cli(["export-xlsx", str(spec), "--input", str(tmp_path / "x.npz"), "-o", str(tmp_path / "s.xlsx")])
    assert args.run(args) == 0 and (tmp_path / "s.xlsx").exists()
    mode = (tmp_path / "x.npz").stat().st_mode & 0o777  # what an ordinary new file gets here
    assert out.stat().st_mode & 0o777 == mode and (tmp_path / "s.xlsx").stat().st_mode & 0o777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.xlsx", "s.xlsx", "small.spec", "x.npz"]


def test_cli_refuses_bad_input_with_a_message(tmp_path: Path) -> None:
    np.save(tmp_path / "wrong.npy", np.zeros((3, 4, 4), np.float32))
    np.savez(tmp_path / "two.npz", a=np.zeros((1, 8, 8)), b=np.zeros((1, 8, 8)))
    spec = tmp_path / "bn.spec"
    spec.write_text("input 1x8x8\nconv 2 k3\nbn\nflatten\nlinear 2\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "whole.npz", w=np.zeros(1000))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:600])  # a copy cut short
    out = str(tmp_path / "m.xlsx")
    for argv, match in [(["nosuchnet", "--digit", "0"], "unknown zoo model 'nosuchnet'; MODEL is 'digits'"),
                        (["lenet5_modern", "--digit", "0"], r"has shape \(1, 8, 8\), but the model takes 1x32x32 "
                                                            r"\(the input shape of lenet5_modern\)"),
                        (["--digit", "9999"], "out of range"),
                        (["--input", str(tmp_path / "two.npz")], r"holds 2 arrays \(a, b\); choose one with --key"),
                        (["--input", str(tmp_path / "two.npz"), "--key", "c"], "'c' is not in"),
                        (["--input", str(tmp_path / "x.txt")], "must be a .npy or .npz"),
                        ([str(spec), "--input", str(tmp_path / "wrong.npy")], r"has shape \(3, 4, 4\), but the model"),
                        ([str(spec), "--digit", "0"], r"'bn1' \(BatchNorm2d\)"),
                        (["digits", "--digit", "0", "--weights", "w.npz"],
                         "--weights applies to a spec or zoo model; digits comes with its own weights"),
                        ([str(spec), "--digit", "0", "--weights", str(tmp_path / "empty.npz")],
                         r"empty\.npz: not an \.npz file"),
                        ([str(spec), "--digit", "0", "--weights", str(tmp_path / "cut.npz")],
                         r"cut\.npz: not a readable \.npz file")]:
        args = _cli(["export-xlsx", *argv, "-o", out])
        with pytest.raises(ValueError, match=match):
            args.run(args)
    with pytest.raises(SystemExit):
        _cli(["export-xlsx", "-o", out])  # neither --input nor --digit
    assert not (tmp_path / "m.xlsx").exists()


@pytest.mark.parametrize("module", ["convscope.export.sheetgrid", "convscope.export.xlsx"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
