"""Re-create the shipped pretrained digits CNN, ``src/convscope/pretrained/digits.npz``.

    python scripts/train_pretrained.py            # train, report, write the weights
    python scripts/train_pretrained.py --check    # train and compare with the shipped file

The run is deterministic: ``convscope.manual_seed(seed)`` fixes the initial weights and the
recipe's seed fixes the batch order and augmentation, so on the same machine (same NumPy and
BLAS) the result is bit-identical to the shipped weights. The NumPy kernels run even where the
optional compiled ones (``convscope[jit]``) are installed: those round differently.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import convscope as cs
from convscope.data import digits
from convscope.functional import jit
from convscope.pretrained import RECIPES, digits_cnn, weights
from convscope.train import evaluate, train

OUT = Path(__file__).resolve().parents[1] / "src" / "convscope" / "pretrained" / "digits.npz"
TARGET = 0.98


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped weights instead of writing")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    recipe = RECIPES["digits"]
    cs.manual_seed(recipe["seed"])
    model = digits_cnn()
    start = time.perf_counter()
    with jit.enabled(False):
        history = train(model, "digits", **recipe, progress=True)
    seconds = time.perf_counter() - start
    _, test_acc = evaluate(model, *digits("test"))
    params = sum(p.numel() for p in model.parameters())
    print(f"digits CNN: {params:,} parameters, {recipe['epochs']} epochs in {seconds:.1f} s; "
          f"val accuracy {history['val_acc'][-1]:.2%}, test accuracy {test_acc:.2%}")
    state = {key: np.asarray(value, np.float32) for key, value in model.state_dict().items()}
    if args.check:
        shipped = weights("digits")
        same = shipped.keys() == state.keys() and all(np.array_equal(shipped[k], state[k]) for k in state)
        print("identical to the shipped weights" if same else "DIFFERS from the shipped weights")
        return 0 if same else 1
    if test_acc < TARGET:
        print(f"test accuracy {test_acc:.2%} is below the {TARGET:.0%} target; not writing", file=sys.stderr)
        return 1
    np.savez_compressed(args.out, **state)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
