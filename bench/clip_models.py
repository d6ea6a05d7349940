"""Every clip model on one real clip set, side by side (issue 19's table): the spectrogram CNNs
on a `logmel` cache and the frozen heads on a `musicnn` cache, each trained and scored by the
stages' own code (`avcache.classification.train` / `evaluate`, the clip protocol: official
folds, validation taken from the training folds, early stopping on it), exactly as
`dvc exp run -S 'inputs=[audio]' -S audio=logmel -S model=<model>` trains it.

    .venv/bin/python bench/clip_models.py --format esc10 --root ../shared/data/esc10 \
        --out /tmp/clip-models/esc10 --models lowcomplexity cnn linear mlp --seeds 0 1 2 \
        --logmel n_mels=64 --set 'lowcomplexity:augment={freq_masks: 2, freq_width: 8}'

Caches are built once per --out folder and each model's row (`<out>/<model>/row.json`) is kept,
so a second call trains only the models that have no row yet; the table of every row is printed
at the end. Columns: test accuracy and macro F1, mean ± std over folds x seeds; parameters and
MACs per 10-s clip of what is trained (a head's MACs: its matrix products, the frozen musicnn
extractor not counted); training minutes on this machine, all folds x seeds, wall clock and, in
brackets, the process's CPU time (which other jobs on the machine do not inflate as much).
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

from avcache.classification.cnns import CNNS  # noqa: E402
from avcache.classification.evaluate import evaluate  # noqa: E402
from avcache.classification.heads import check_options  # noqa: E402
from avcache.classification.train import train  # noqa: E402
from avcache.contract import params as P  # noqa: E402
from avcache.contract.cache import read_features  # noqa: E402
from avcache.contract.dataset import read_dataset, write_dataset  # noqa: E402
from avcache.datasets.stage import DatasetParams, load  # noqa: E402
from avcache.extraction import stage as run  # noqa: E402


def pairs(items: list[str]) -> dict:
    return {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in items)}


def model_sets(items: list[str]) -> dict[str, dict]:
    """``model:key=value`` strings -> {model: {key: value}}."""
    out: dict[str, dict] = {}
    for s in items:
        model, kv = s.split(":", 1)
        out.setdefault(model, {}).update(pairs([kv]))
    return out


def cache(extractor: str, changes: dict, ds, out: Path) -> Path:
    path = out / f"{extractor}.h5"
    if not path.exists():
        t0 = time.time()
        options = {**P.section(P.load(), f"extractors.{extractor}"), **changes}
        run.run("audio", extractor, options, ds, ds.videos, path, progress=True, device="cpu")
        print(f"{extractor} cache of {len(ds.video_ids)} clips: {time.time() - t0:.0f} s", flush=True)
    return path


def head_size(model: str, options: dict, dim: int, classes: int) -> tuple[int, int]:
    """(parameters, MACs per 10-s clip) of a frozen-embedding head on ``dim``-wide per-second rows."""
    if model == "linear":
        return dim * classes + classes, dim * classes
    if model == "mlp":
        h = options["hidden"]
        return dim * h + h + h * classes + classes, dim * h + h * classes
    raise SystemExit(f"bench/clip_models.py: no size rule for head {model}")


def row_of(model: str, options: dict, metrics: dict, info: dict, minutes: float, dim: int, classes: int) -> dict:
    t = metrics["test"]
    if "model_size" in info:
        params, macs = info["model_size"]["params"], info["model_size"]["macs_per_10s_clip"]
    else:
        params, macs = head_size(model, options, dim, classes)
    epochs = [r.get("epochs") for r in info["runs"] if r.get("epochs") is not None]
    return {
        "model": model,
        "cache": next(iter(info["caches"].values()))["name"],
        "acc": t["acc"],
        "acc_std": t["acc_std"],
        "macro_f1": t["macro_f1"],
        "macro_f1_std": t["macro_f1_std"],
        "params": params,
        "macs_per_10s_clip": macs,
        "train_minutes": round(minutes, 1),
        "folds": metrics["folds"],
        "seeds": metrics["seeds"],
        "epochs": epochs,
        "options": options,
    }


def macs(n: int) -> str:
    return f"{n / 1e6:,.0f} M" if n >= 1e6 else f"{n:,}"


def table(rows: list[dict]) -> str:
    lines = [
        "| model | cache | accuracy | macro F1 | parameters | MACs / 10-s clip | train minutes (CPU) | folds x seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['cache']} | {r['acc']:.3f} ± {r['acc_std']:.3f} | "
            f"{r['macro_f1']:.3f} ± {r['macro_f1_std']:.3f} | {r['params']:,} | "
            f"{macs(r['macs_per_10s_clip'])} | "
            f"{r['train_minutes']:.1f} ({r.get('train_cpu_minutes', '—')}) | {r['folds']} x {r['seeds']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", required=True, help="a clip format of dataset.format: esc10, fsdd, ...")
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-seconds", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["lowcomplexity", "cnn", "linear", "mlp"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", nargs="*", default=[], help="model:key=value (YAML values), e.g. cnn:max_epochs=60")
    ap.add_argument("--logmel", nargs="*", default=[], help="extractors.logmel changes, key=value")
    ap.add_argument("--musicnn", nargs="*", default=[], help="extractors.musicnn changes, key=value")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if not (a.out / "dataset.h5").exists():
        cfg = DatasetParams(format=a.format, root=str(a.root), videos=str(a.root), max_seconds=a.max_seconds)
        write_dataset(load(cfg), a.out / "dataset.h5")
    ds = read_dataset(a.out / "dataset.h5")
    changes = model_sets(a.set)
    for model in a.models:
        done = a.out / model / "row.json"
        if done.exists():
            continue
        spec = model in CNNS
        audio = cache("logmel", pairs(a.logmel), ds, a.out) if spec else cache("musicnn", pairs(a.musicnn), ds, a.out)
        options = check_options(model, {**P.section(P.load(), f"models.{model}"), **changes.get(model, {})})
        t0, c0 = time.time(), time.process_time()
        work = a.out / model
        info = train(model, options, a.seeds, ds, audio, None, work / "models", work / "live")
        minutes, cpu = (time.time() - t0) / 60, (time.process_time() - c0) / 60
        metrics = evaluate(a.out / "dataset.h5", work / "models", work / "results", work / "live")
        dim = 0 if spec else read_features(audio, ds).shape[-1]
        row = row_of(model, options, metrics, info, minutes, dim, ds.labels.shape[1]) | {
            "train_cpu_minutes": round(cpu, 1)
        }
        done.write_text(json.dumps(row, indent=1) + "\n")
    rows = [json.loads((a.out / m / "row.json").read_text()) for m in a.models if (a.out / m / "row.json").exists()]
    print(table(rows))


if __name__ == "__main__":
    main()
