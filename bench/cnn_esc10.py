"""A spectrogram CNN on ESC-10's 400 real clips under the clip protocol (official 5 folds,
validation the next fold, early stopping), on a `logmel` cache built by the extraction stage
(params.yaml's options, or `--logmel key=value` changes), exactly as `dvc exp run -S audio=logmel
-S model=<model>` trains it:

    .venv/bin/python bench/cnn_esc10.py --esc10 ../shared/data/esc10 --out /tmp/cnn_esc10 \
        --model lowcomplexity --seeds 0 --set max_epochs=40 patience=8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.kernels import pin  # noqa: E402

pin()

import yaml  # noqa: E402

from avcache.classification.evaluate import evaluate  # noqa: E402
from avcache.classification.heads import check_options  # noqa: E402
from avcache.classification.train import train  # noqa: E402
from avcache.contract import params as P  # noqa: E402
from avcache.contract.dataset import read_dataset, write_dataset  # noqa: E402
from avcache.datasets.stage import DatasetParams, load  # noqa: E402
from avcache.extraction import stage as run  # noqa: E402


def pairs(items: list[str]) -> dict:
    return {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in items)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc10", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="lowcomplexity")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", nargs="*", default=[], help="models.<model> options, key=value (YAML values)")
    ap.add_argument("--logmel", nargs="*", default=[], help="extractors.logmel changes, key=value")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    ds = load(DatasetParams(format="esc10", root=str(a.esc10), videos=str(a.esc10), max_seconds=5))
    write_dataset(ds, a.out / "dataset.h5")
    ds = read_dataset(a.out / "dataset.h5")
    spec = a.out / "logmel.h5"
    if not spec.exists():
        t0 = time.time()
        options = {**P.section(P.load(), "extractors.logmel"), **pairs(a.logmel)}
        run.run("audio", "logmel", options, ds, ds.videos, spec, progress=True, device="cpu")
        print(f"logmel cache of {len(ds.video_ids)} clips: {time.time() - t0:.0f} s")
    options = check_options(a.model, {**P.section(P.load(), f"models.{a.model}"), **pairs(a.set)})
    t1 = time.time()
    info = train(a.model, options, a.seeds, ds, spec, spec, a.out / "models", a.out / "live", True, "cpu")
    print(f"training ({len(a.seeds)} seed(s) x 5 folds): {time.time() - t1:.0f} s")
    metrics = evaluate(a.out / "dataset.h5", a.out / "models", a.out / "results", a.out / "live")
    epochs = [r["epochs"] for r in info["runs"]]
    print(json.dumps({"test": metrics["test"], "epochs": epochs}, indent=1))


if __name__ == "__main__":
    main()
