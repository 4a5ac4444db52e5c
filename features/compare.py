"""python -m features.compare A.npy B.npy: how close two feature files of one video are, e.g. ours against the
released file. Prints the per-snippet cosine similarity (mean, median, min and where) and the relative L2
distance ||A - B|| / ||B|| over all snippets (B is the reference). Files of different length are compared on
their common prefix, and the output says so. A last line says what to expect (GUIDE). Exit 2 when a file is not
a .npy file, cannot be read or the shapes do not fit."""
import argparse
import sys

import numpy as np

from utils.cli import run

GUIDE = ("expected: one video extracted twice with the same settings on one machine gives cosine 1.0000 and rel "
         "L2 0.0000; another decoder, flow method or pipeline gives less (users saw cosine ~0.95 RGB and ~0.8 flow "
         "against the released THUMOS14 files); the features are >= 0, so a high cosine alone does not show one "
         "video")


def load(path):
    """A [T, D] feature array from a .npy file; ValueError naming the file otherwise."""
    if not str(path).endswith(".npy"):
        raise ValueError(f"{path}: not a .npy file (compare takes the [T, D] .npy feature files of python -m features)")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot be read as a .npy array ({str(err).splitlines()[0]})") from None
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{path}: expected a [T, D] feature array with T >= 1, got shape {list(x.shape)}")
    return x.astype(np.float64)


def compare(a, b):
    """dict(T=common snippets, cosine=[T] per-snippet cosine similarity, rel_l2=||a - b|| / ||b||) of two [T, D]
    arrays, on their common prefix. Two zero rows count as cosine 1, one zero row as 0."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    t = min(len(a), len(b))
    a, b = a[:t], b[:t]
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    both_zero = (na == 0) & (nb == 0)
    cosine = np.where(both_zero, 1.0, dot / np.maximum(na * nb, np.finfo(np.float64).tiny))
    norm_b = np.linalg.norm(b)
    rel = np.linalg.norm(a - b) / norm_b if norm_b > 0 else (0.0 if not a.any() else np.inf)
    return {"T": t, "cosine": cosine, "rel_l2": float(rel)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m features.compare", description=__doc__.split("\n")[0])
    p.add_argument("a", metavar="A.npy")
    p.add_argument("b", metavar="B.npy", help="the reference (e.g. the released feature file)")
    args = p.parse_args(argv)
    a, b = load(args.a), load(args.b)
    r = compare(a, b)
    cos = r["cosine"]
    print(f"A {args.a}: {list(a.shape)}   B {args.b}: {list(b.shape)}")
    if len(a) != len(b):
        print(f"T differs ({len(a)} vs {len(b)}): comparing the first {r['T']} snippets")
    print(f"cosine similarity per snippet: mean {cos.mean():.4f}  median {np.median(cos):.4f}  "
          f"min {cos.min():.4f} (snippet {int(cos.argmin())})")
    print(f"relative L2 distance ||A - B|| / ||B||: {r['rel_l2']:.4f}")
    print(GUIDE)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
