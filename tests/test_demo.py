"""`convscope demo`: the hand arithmetic really is independent and really agrees."""

import re

import numpy as np
import pytest

import convscope as cs
from convscope import demo
from convscope.cli import build_parser, main


def test_hand_check_agrees_and_can_disagree():
    rows, check = demo.run(height=9, width=11, k1=3, k2=4, seed=5)
    assert check.ok and check.products == 3 * 5 * 5
    assert [r.output_shape for r in rows] == [(3, 9, 11), (3, 9, 11), (4, 5, 7)]
    assert rows[2].params == 4 * 3 * 25 + 4
    bad = demo.HandCheck(check.index, check.bias, check.products, check.by_hand + 1e-6, check.engine)
    assert not bad.ok


def test_digits_report_matches_an_independent_evaluation():
    report = demo.digits_report(7)
    X, y = cs.data.digits("test")
    logits = cs.pretrained("digits")(cs.tensor(X)).numpy()
    assert report.correct == int((logits.argmax(1) == y).sum()) and report.accuracy >= 0.98
    assert np.isclose(report.probabilities.sum(), 1.0) and report.label == y[7]
    assert report.influence.shape == (8, 8)


def test_cli_demo(capsys):
    assert main(["demo", "--height", "8", "--width", "8", "--k1", "2", "--k2", "3"]) == 0
    out = capsys.readouterr().out
    assert "OK: identical" in out and "Test accuracy of the shipped digits CNN: " in out
    assert main(["demo", "--digit", "359"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "convscope demo: error: --digit must be in 0..358, got 359\n"  # nothing printed first


def test_cli_demo_refuses_bad_sizes_in_one_line(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["demo", "--height", "abc"])
    assert "argument --height: expected a positive integer, got 'abc'" in capsys.readouterr().err
    assert main(["demo", "--height", "4"]) == 2
    assert capsys.readouterr().err == ("convscope demo: error: --height and --width must be at least 5 for the second "
                                       "layer's 5×5 kernel, got 4×10\n")

    def too_big(*args):
        raise MemoryError

    monkeypatch.setattr(demo, "run", too_big)  # as NumPy fails for a 100000×100000 image
    assert main(["demo", "--height", "100000", "--width", "100000"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("convscope demo: error: --height 100000 --width 100000: the seed example's "
                                        "24 feature maps of that size do not fit in memory") and "Traceback" not in err


def _commands_with_a_seed() -> list[list[str]]:
    """Every sub-command (``viz animate`` included) that has a ``--seed`` option."""
    found, todo = [], [([], build_parser())]
    while todo:
        path, parser = todo.pop()
        for action in parser._actions:
            if "--seed" in action.option_strings:
                found.append(path)
            for name, sub in getattr(action, "choices", None).items() if isinstance(action.choices, dict) else ():
                todo.append(([*path, name], sub))
    return sorted(found)


@pytest.mark.parametrize("command", _commands_with_a_seed(), ids=" ".join)
def test_every_seed_option_refuses_a_negative_seed_by_name(command, capsys):
    """NumPy's generators take seeds ≥ 0; -1 used to fail later, in NumPy, as 'expected
    non-negative integer', naming no option."""
    try:
        code = main([*command, "--seed", "-1"])
    except SystemExit as stopped:  # refused by the option's type
        code = stopped.code
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"--seed:? (expected an integer|must be a non-negative integer).*-1\n$", err), err
