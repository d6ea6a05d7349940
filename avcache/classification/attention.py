"""The attention stage on a clip dataset: no maps. The clip heads pool each clip over time and
regions and attend to nothing in the frame, so the output folder holds a README saying why and
the stage succeeds (as ``avcache.localization.attention`` does for a model without visual
attention), so a sweep is not broken by it.

    python -m avcache attention --dataset features/dataset.h5 --audio ... --visual ... \
        --models models --out results/attention       # on a clip dataset
"""

from __future__ import annotations

import argparse
from pathlib import Path

WHY = "attention maps are drawn for event localization (AVE-format) datasets only"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--audio", type=Path)
    ap.add_argument("--visual", type=Path)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for README.txt")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "README.txt").write_text(f"No attention maps: {WHY}\n")
    print(f"attention: no maps: {WHY}")


if __name__ == "__main__":
    main()
