"""What a MODEL names (convscope.models): every kind through the shared resolver, and through
every command that takes one (summary, trace, viz, export-xlsx, serve), with the errors a
bad MODEL gets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convscope as cs
from convscope import nn
from convscope.cli import main
from convscope.models import EXPECTED, model_kind, resolve_model
from convscope.pretrained import weights

SPEC = "input 1x8x8\nconv 4 k3\nrelu\nflatten\nlinear 10\n"
SPEC_PARAMS = 4 * 9 + 4 + 144 * 10 + 10  # conv 1→4 3×3 with bias, linear 144→10 with bias
BUILDERS = """\
from convscope import nn


def build():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    net.input_shape = (1, 8, 8)
    return net


def torch_build():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 10))


def five():
    return 5


def needs(x):
    return x


def fails():
    raise RuntimeError("no GPU here")


def exits():
    raise SystemExit(3)
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a spec, Python builders, a training run of the spec and an empty folder."""
    from convscope.train import run

    root = tmp_path_factory.mktemp("models")
    (root / "small.spec").write_text(SPEC)
    (root / "builders.py").write_text(BUILDERS)
    (root / "empty").mkdir()
    run(str(root / "small.spec"), out=root / "run", epochs=1, progress=False)
    return root


def _onnx(files: Path) -> Path:
    """The spec exported to ONNX (made on first use: it needs the onnx package)."""
    pytest.importorskip("onnx")
    path = files / "small.onnx"
    if not path.exists():
        cs.export_onnx(cs.load_spec(files / "small.spec"), path, (1, 8, 8))
    return path


def _arg(kind: str, files: Path) -> str:
    """The MODEL text of each kind the commands take."""
    return {"digits": "digits", "zoo": "lenet5_modern", "spec": str(files / "small.spec"),
            "python": f"{files / 'builders.py'}:build", "run": str(files / "run")}.get(kind) or str(_onnx(files))


KINDS = ["digits", "zoo", "spec", "onnx", "python", "run"]
DIGITS_PARAMS = sum(v.size for v in weights("digits").values())
PARAMS = {"digits": DIGITS_PARAMS, "zoo": 61_706, "spec": SPEC_PARAMS, "onnx": SPEC_PARAMS, "python": SPEC_PARAMS,
          "run": SPEC_PARAMS}
SHAPES = {"digits": (1, 8, 8), "zoo": (1, 32, 32), "spec": (1, 8, 8), "onnx": (1, 8, 8), "python": (1, 8, 8),
          "run": (1, 8, 8)}


def _first_conv(net: nn.Module) -> str:
    return next(name for name, m in net.named_modules() if getattr(m, "weight", None) is not None
                and m.weight.ndim == 4)


def _state(net: nn.Module) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in net.state_dict().items()}


# --- the shared resolver -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_model_text_resolves_to_its_model_shape_and_name(files: Path, kind: str) -> None:
    text = _arg(kind, files)
    found = resolve_model(text, weights=True)
    names = {"digits": "digits", "zoo": "lenet5_modern", "spec": "small.spec", "onnx": "small.onnx",
             "python": "builders.py:build", "run": "run"}
    assert (model_kind(text), found.kind, found.name, found.input_shape) == (kind, kind, names[kind], SHAPES[kind])
    assert sum(p.numel() for p in found.module.parameters()) == PARAMS[kind]
    assert not found.module.training  # built from text with weights: ready to run


def test_digits_and_a_run_carry_the_weights_they_were_trained_to(files: Path) -> None:
    digits = _state(resolve_model("digits").module)
    assert digits.keys() == weights("digits").keys()
    assert all(np.array_equal(digits[k], v) for k, v in weights("digits").items())
    trained = dict(np.load(files / "run" / "weights.npz"))
    for text in (files / "run", files / "run" / "checkpoint.npz", str(files / "run")):
        found = resolve_model(text)
        state = _state(found.module)
        assert found.name == "run" and all(np.array_equal(state[k], v) for k, v in trained.items())


def test_zoo_models_and_specs_are_meta_without_weights_and_seeded_with_them(files: Path) -> None:
    for text in ("lenet5_modern", str(files / "small.spec"), SPEC):
        assert all(p.is_meta for p in resolve_model(text).module.parameters()), text
        before = cs.random.get_rng_state()["state"]
        a, b = (_state(resolve_model(text, weights=True, seed=3).module) for _ in range(2))
        c = _state(resolve_model(text, weights=True, seed=4).module)
        assert cs.random.get_rng_state()["state"] == before  # the global random state is left alone
        assert all(np.array_equal(a[k], b[k]) for k in a) and not all(np.array_equal(a[k], c[k]) for k in a)
        cs.manual_seed(3)  # the same weights as seeding and building by hand
        by_hand = _state(cs.zoo.build(text) if text == "lenet5_modern" else cs.load_spec(text))
        assert all(np.array_equal(a[k], by_hand[k]) for k in a)


def test_a_python_builder_is_called_under_the_seed(files: Path) -> None:
    text = f"{files / 'builders.py'}:build"
    before = cs.random.get_rng_state()["state"]
    a, b, c = (_state(resolve_model(text, seed=seed).module) for seed in (3, 3, 4))
    assert cs.random.get_rng_state()["state"] == before
    assert all(np.array_equal(a[k], b[k]) for k in a) and not all(np.array_equal(a[k], c[k]) for k in a)


def test_spec_text_modules_and_torch_modules_resolve(files: Path) -> None:
    torch = pytest.importorskip("torch")
    text = resolve_model(SPEC)
    assert (text.kind, text.name, text.input_shape) == ("spec", "spec", (1, 8, 8))
    net = nn.Sequential(nn.Conv2d(1, 2, 3))
    found = resolve_model(net, weights=True)
    assert found.module is net and net.training and (found.kind, found.name, found.input_shape) == (
        "module", "Sequential", None)
    twin = resolve_model(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))
    assert (twin.kind, twin.name, twin.input_shape) == ("torch", "Sequential", None)
    built = resolve_model(f"{files / 'builders.py'}:torch_build")
    assert (built.kind, built.name, built.input_shape) == ("python", "builders.py:torch_build", None)
    assert sum(p.numel() for p in built.module.parameters()) == SPEC_PARAMS


def test_the_sample_shape_is_the_given_one_else_the_models_own() -> None:
    found = resolve_model(nn.Sequential(nn.Conv2d(1, 2, 3)))
    assert found.sample_shape((1, 5, 5), "costs") == (1, 5, 5)
    with pytest.raises(ValueError, match=r"^costs: Sequential has no input shape of its own: give one"):
        found.sample_shape(None, "costs")
    assert resolve_model("digits").sample_shape(None, "costs") == (1, 8, 8)


BAD = [
    ("resnt18", r"^unknown zoo model 'resnt18'\. Did you mean resnet18"),
    ("digit", r"^unknown zoo model 'digit'\. Did you mean digits\?$"),
    ("xyzzy", rf"^unknown zoo model 'xyzzy'; MODEL is {re.escape(EXPECTED)}$"),
    ("{root}/empty", r"empty is a folder without a training run's checkpoint\.npz; MODEL is 'digits'"),
    ("{root}/nothing.spec", r"^no such file or folder '.*nothing\.spec'; MODEL is 'digits'"),
    ("{root}/nothing/", r"^no such file or folder '.*nothing/'; MODEL is"),
    ("{root}/builders.py", r"builders\.py is a Python file: name the function that returns the model, as "
                           r".*builders\.py:FUNCTION$"),
    ("{root}/nothing.py:build", r"^no such Python file '.*nothing\.py' \(expected FILE\.py:FUNCTION\)$"),
    ("{root}/builders.py:absent", r"builders\.py has no function 'absent' \(expected FILE\.py:FUNCTION\)$"),
    ("{root}/builders.py:five", r"builders\.py:five: five\(\) returned a value of type int, not a convscope or "
                                r"torch module$"),
    ("{root}/builders.py:needs", r"builders\.py:needs: calling needs\(\) failed: needs\(\) missing 1 required"),
    ("{root}/builders.py:fails", r"builders\.py:fails: calling fails\(\) failed: RuntimeError: no GPU here"),
    ("{root}/broken.py:build", r"broken\.py: importing it failed: SyntaxError: "),
    ("{root}/builders.py:exits", r"builders\.py:exits: calling exits\(\) failed: it called sys\.exit\(3\) \(code that "
                                 r"runs the file as a script belongs under if __name__ == '__main__':\)"),
    ("{root}/broken.spec", r"broken\.spec:2:11: conv takes 1 bare value"),
    ("{root}/broken.onnx", r"broken\.onnx: not a readable ONNX model"),
    ("{root}/empty.onnx", r"empty\.onnx: not an ONNX model: it is empty$"),  # was "imports no default-domain opset"
    ("", rf"^MODEL is empty; MODEL is {re.escape(EXPECTED)}$"),  # was "' is a folder without a training run'"
    (" ", r"^MODEL is empty; MODEL is 'digits'"),
    (os.devnull, rf"^{re.escape(os.devnull)} is not a regular file \(a pipe or a device\); save the model to a file "
                 r"first$"),  # was "no such file or folder"
    ("{root}/weights.npz", r"weights\.npz: "),
    ("{root}/saved.pt", r"saved\.pt is a saved PyTorch file, which convscope does not unpickle: name a "
                        r"FILE\.py:FUNCTION"),  # was read as a spec: "not UTF-8 text"
]


def _bad(files: Path, text: str) -> str:
    (files / "broken.py").write_text("def build(:\n")
    (files / "broken.spec").write_text("input 1x8x8\nconv 4 k3 z\n")
    (files / "broken.onnx").write_bytes(b"\x08\x07not protobuf at all")
    (files / "empty.onnx").write_bytes(b"")
    np.savez(files / "weights.npz", w=np.zeros(3))  # an .npz that is no checkpoint
    (files / "saved.pt").write_bytes(b"PK\x03\x04 a torch.save zip")
    return text.format(root=files)


@pytest.mark.parametrize("text, message", BAD, ids=[t for t, _ in BAD])
def test_a_bad_model_is_a_one_line_value_error_naming_it(files: Path, text: str, message: str) -> None:
    if text.endswith(".onnx"):
        pytest.importorskip("onnx")
    with pytest.raises(ValueError, match=message) as err:
        resolve_model(_bad(files, text))
    assert "\n" not in str(err.value)


def test_a_file_that_parses_arguments_at_import_is_one_error_naming_it(tmp_path: Path, capsys) -> None:
    """A training script with a module-level ``parser.parse_args()`` read convscope's own
    options, printed a usage line that looked like convscope's, and exited without a word."""
    script = tmp_path / "train_script.py"
    script.write_text("import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--data', "
                      "required=True)\nargs = parser.parse_args()\n\n\ndef build():\n    return None\n")
    assert main(["summary", f"{script}:build", "--input", "1x8x8"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "usage: train_script.py [-h] --data DATA"  # the script's own parser, under its own name
    assert err[-1] == (f"convscope summary: error: {script}: importing it failed: it called sys.exit(2) (code that "
                       "runs the file as a script belongs under if __name__ == '__main__':)")
    assert sys.argv[0] != str(script)


def test_a_value_that_names_no_model_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"expected a convscope or torch module, or text naming a model .*got int$"):
        resolve_model(5)


def test_importing_the_resolver_imports_no_heavy_package() -> None:
    code = ("import sys, convscope.models\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx', 'matplotlib', 'fastapi', "
            "'uvicorn', 'openpyxl'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- every command takes every kind --------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_summary_takes_every_kind(files: Path, kind: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["summary", _arg(kind, files), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == PARAMS[kind] and data["input_shapes"] == [[1, *SHAPES[kind]]]


@pytest.mark.parametrize("kind", KINDS)
def test_trace_takes_every_kind(files: Path, kind: str, capsys: pytest.CaptureFixture) -> None:
    text = _arg(kind, files)
    net = resolve_model(text, weights=True).module
    layer = _first_conv(net)
    assert main(["trace", text, "--layer", layer, "--index", "0,1,2,3", "--json"]) == 0
    traced = json.loads(capsys.readouterr().out)
    x = np.random.default_rng(0).random((1, *SHAPES[kind])).astype(np.float32)  # the command's default input
    assert traced["value"] == pytest.approx(float(cs.inspect.activations(net, x, [layer])[layer][0, 1, 2, 3]),
                                            rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_viz_takes_every_kind(files: Path, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("matplotlib")
    for figure in ("architecture", "filters"):  # shapes only, and real weights
        out = tmp_path / f"{figure}.png"
        assert main(["viz", figure, _arg(kind, files), "-o", str(out)]) == 0
        assert out.stat().st_size > 1000 and f"wrote {out}" in capsys.readouterr().out


def test_trace_of_a_model_without_an_input_shape_takes_an_input_with_its_batch(files: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("torch")
    text = f"{files / 'builders.py'}:torch_build"
    assert main(["trace", text, "--layer", "0", "--index", "0,0,0,0"]) == 2
    assert capsys.readouterr().err == (f"convscope trace: error: {text} has no input shape of its own: give --input, "
                                       "an array shaped like the model's input with its batch dim\n")
    np.save(tmp_path / "x.npy", np.ones((1, 1, 8, 8), np.float32))
    assert main(["trace", text, "--layer", "0", "--index", "0,0,0,0", "--input", str(tmp_path / "x.npy"),
                 "--json"]) == 0
    net = resolve_model(text).module
    want = cs.inspect.activations(net, np.ones((1, 1, 8, 8), np.float32), ["0"])["0"][0, 0, 0, 0]
    assert json.loads(capsys.readouterr().out)["value"] == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("kind", ["digits", "spec", "python", "run"])
def test_export_xlsx_takes_every_sequential_kind(files: Path, kind: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("openpyxl")
    out = tmp_path / "m.xlsx"
    assert main(["export-xlsx", _arg(kind, files), "--digit", "0", "-o", str(out)]) == 0
    net = resolve_model(_arg(kind, files), weights=True).module
    with cs.no_grad():
        predicted = int(net(cs.tensor(cs.data.digits("test")[0][:1])).numpy().argmax())
    assert out.exists() and f"the engine predicts class {predicted}" in capsys.readouterr().out


def test_export_xlsx_refuses_a_model_it_cannot_lay_out(files: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("openpyxl")
    # convscope's ONNX export writes the flatten as a Reshape node, which has no sheet
    assert main(["export-xlsx", _arg("onnx", files), "--digit", "0", "-o", str(tmp_path / "m.xlsx")]) == 2
    assert "layer 'flatten1_reshape' (Reshape) has no spreadsheet form" in capsys.readouterr().err
    assert main(["export-xlsx", str(files / "run"), "--digit", "0", "--weights", "w.npz", "-o", "m.xlsx"]) == 2
    assert "--weights applies to a spec or zoo model; run comes with its own weights" in capsys.readouterr().err


@pytest.mark.parametrize("kind", KINDS)
def test_serve_shows_every_kind_first(files: Path, kind: str) -> None:
    pytest.importorskip("fastapi")
    from convscope.web import create_app
    from convscope.web.cli import _default_model
    from convscope.web.limits import Limits

    app = create_app(Limits())
    model_id = _default_model(app, _arg(kind, files))
    entry = app.state.store.get(model_id)
    listed = {"digits": "pretrained", "zoo": "zoo", "spec": "spec", "onnx": "onnx", "python": "python", "run": "run"}
    assert entry.kind == listed[kind] and entry.input_shape == SHAPES[kind]
    assert entry.summarize().totals.params == PARAMS[kind]
    assert any(m["id"] == model_id for m in app.state.store.entries())


COMMANDS = {"summary": ["summary", "{model}"],
            "trace": ["trace", "{model}", "--layer", "0", "--index", "0"],
            "viz": ["viz", "filters", "{model}", "-o", "{out}.png"],
            "export-xlsx": ["export-xlsx", "{model}", "--digit", "0", "-o", "{out}.xlsx"],
            "serve": ["serve", "{model}"]}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("text, message", [b for b in BAD if b[0] in ("resnt18", "{root}/empty", "{root}/nothing.spec",
                                                                     "{root}/builders.py:needs", "{root}/broken.spec")],
                         ids=lambda t: t.removeprefix("{root}/") if t.startswith(("r", "{")) else "")
def test_every_command_refuses_a_bad_model_in_one_line(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      command: str, text: str, message: str) -> None:
    if command == "serve":
        pytest.importorskip("uvicorn")
    model = _bad(files, text)
    argv = [arg.format(model=model, out=tmp_path / "m") for arg in COMMANDS[command]]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    prefix = f"convscope {command}: error: "
    assert out == "" and err.startswith(prefix) and err.count("\n") == 1, err
    assert re.search(message, err.removeprefix(prefix).rstrip("\n")), err
    assert not list(tmp_path.iterdir())
