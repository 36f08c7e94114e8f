"""`convscope demo`: the hand arithmetic really is independent and really agrees."""

import numpy as np

import convscope as cs
from convscope import demo
from convscope.cli import main


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
    assert main(["demo", "--digit", "100000"]) == 2
    assert "--digit must be in 0..358" in capsys.readouterr().err
