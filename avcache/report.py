"""One report comparing DVC experiments side by side; it reads what they wrote and trains nothing.

    python -m avcache report                          # every experiment of HEAD, and the workspace
    python -m avcache report exp-a exp-b --out results/report.md

For each experiment: what it is (audio, visual, model or head, recipe), every metric as mean ± std
with the best of each column in bold, per-class F1 side by side, validation curves overlaid,
confusion matrices side by side, and each cache's provenance (extractor, layer, reduction,
weights hash, code hash). ``.html`` gives one self-contained page (figures embedded); ``.md`` a
Markdown page with its figures in a folder beside it.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from avcache.contract.io import counted

CACHE_FIELDS = ("extractor", "layer", "reduction", "weights", "weights_sha256", "code_sha256", "storage")


@dataclass
class Experiment:
    name: str
    rev: str | None  # None: the workspace
    params: dict
    metrics: dict
    per_class: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)  # label -> (epochs, values)
    confusion: list = field(default_factory=list)  # (actual, predicted) class names
    caches: dict = field(default_factory=dict)  # modality -> provenance subset

    @property
    def what(self) -> str:
        p = self.params
        model = p.get("model", "?")
        options = p.get("models", {}).get(model, {})
        recipe = {k: v for k, v in p.get("train", {}).items() if k != "seeds"}
        return (
            f"{p.get('audio')} + {p.get('visual')}, {model} {json.dumps(options, sort_keys=True)}, "
            f"train {json.dumps(recipe, sort_keys=True)}, seeds {p.get('train', {}).get('seeds')}"
        )


def _read(path: str, rev: str | None, mode: str = "r"):
    import dvc.api

    try:
        return dvc.api.read(path, rev=rev, mode=mode)
    except Exception:  # not produced by that experiment (an older one, a failed run)
        return None


def _provenance(path: str, rev: str | None) -> dict:
    import dvc.api
    import h5py

    try:
        with dvc.api.open(path, rev=rev, mode="rb") as f, h5py.File(io.BytesIO(f.read()), "r") as h:
            prov = json.loads(h.attrs["provenance"])
    except Exception:
        return {}
    return {k: prov[k] for k in CACHE_FIELDS if k in prov}


def _curves(rev: str | None) -> dict:
    """Mean validation curve over seeds (and folds) per metric, from the experiment's dvclive files."""
    import dvc.api

    fs = dvc.api.DVCFileSystem(rev=rev) if rev else dvc.api.DVCFileSystem()
    by_metric = defaultdict(list)
    try:
        files = [f for f in fs.find("dvclive/plots/metrics") if f.endswith(".tsv") and "/val/" in f]
    except Exception:
        return {}
    for f in files:
        rows = list(csv.DictReader(io.StringIO(fs.read_text(f)), delimiter="\t"))
        key = [k for k in rows[0] if k not in ("step", "timestamp")][0]
        by_metric[Path(f).stem].append([float(r[key]) for r in rows])
    out = {}
    for metric, runs in by_metric.items():
        n = min(len(r) for r in runs)
        out[f"val {metric}"] = (list(range(n)), np.mean([r[:n] for r in runs], 0).tolist())
    return out


def collect(names: list[str] | None = None) -> list[Experiment]:
    """The experiments of HEAD (``dvc exp show``) and the workspace, or only those named."""
    import dvc.api

    rows = dvc.api.exp_show()
    found = []
    for row in rows:
        name = row.get("Experiment") or ("workspace" if row["rev"] == "workspace" else row["rev"][:7])
        if names and name not in names and row["rev"] not in names:
            continue
        rev = None if row["rev"] == "workspace" else row["rev"]
        metrics = _read("results/metrics.json", rev)
        if not metrics:
            continue
        params = dvc.api.params_show(rev=rev)
        exp = Experiment(name, rev, params, json.loads(metrics))
        per_class = _read("results/per_class.json", rev)
        if per_class:
            exp.per_class = json.loads(per_class).get("per_class_test_mean_over_seeds", {})
        confusion = _read("results/confusion.csv", rev)
        if confusion:
            exp.confusion = [(r["actual"], r["predicted"]) for r in csv.DictReader(io.StringIO(confusion))]
        exp.curves = _curves(rev)
        for modality in ("audio", "visual"):
            if params.get(modality):
                exp.caches[modality] = _provenance(f"features/{modality}/{params[modality]}.h5", rev)
        found.append(exp)
    missing = set(names or []) - {e.name for e in found} - {e.rev for e in found}
    if missing:
        raise SystemExit(f"report: no experiment named {sorted(missing)} with results (dvc exp show lists them)")
    return found


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def metric_table(exps: list[Experiment]) -> tuple[list[str], list[list[str]]]:
    """Columns 'split.metric' (mean ± std), the best test and val score of each in bold (per-fold
    and per-seed details left out); ``train`` holds the selected and stopping epochs."""
    flats = [
        _flat(
            {
                k: ({kk: vv for kk, vv in v.items() if kk != "per_seed"} if k == "train" else v)
                for k, v in e.metrics.items()
                if k in ("test", "val", "train")
            }
        )
        for e in exps
    ]
    columns = sorted(
        {k for f in flats for k in f if not k.endswith("_std")}, key=lambda k: (k.split(".")[0] != "test", k)
    )
    best = {c: max((f[c] for f in flats if c in f), default=None) for c in columns}
    rows = []
    for e, f in zip(exps, flats):
        cells = []
        for c in columns:
            if c not in f:
                cells.append("")
                continue
            text = f"{f[c]:.4f}" + (f" ± {f[c + '_std']:.4f}" if c + "_std" in f else "")
            scored = c.startswith(("test.", "val."))  # all higher-is-better; epochs are not scores
            cells.append(f"**{text}**" if scored and len(exps) > 1 and f[c] == best[c] else text)
        rows.append([e.name] + cells)
    return ["experiment"] + columns, rows


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def curves_figure(exps: list[Experiment]) -> bytes | None:
    metrics = sorted({m for e in exps for m in e.curves})
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for e in exps:
            if metric in e.curves:
                ax.plot(*e.curves[metric], label=e.name)
        ax.set(xlabel="epoch", title=f"{metric} (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def confusion_figure(exps: list[Experiment]) -> bytes | None:
    shown = [e for e in exps if e.confusion]
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), squeeze=False)
    for ax, e in zip(axes[0], shown):
        names = sorted({a for a, _ in e.confusion} | {p for _, p in e.confusion})
        idx = {n: k for k, n in enumerate(names)}
        m = np.zeros((len(names), len(names)))
        for a, p in e.confusion:
            m[idx[a], idx[p]] += 1
        ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), [n[:12] for n in names], rotation=70, fontsize=6)
        ax.set_yticks(range(len(names)), [n[:12] for n in names], fontsize=6)
        ax.set_title(e.name, fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def sections(exps: list[Experiment]) -> list[tuple[str, str | bytes]]:
    """(title, markdown text or PNG bytes), in order."""
    out = [
        (
            "Experiments",
            _md_table(["experiment", "audio + visual, model {options}, recipe"], [[e.name, e.what] for e in exps]),
        ),
        ("Metrics (mean ± std over seeds; best of each column in bold)", _md_table(*metric_table(exps))),
    ]
    classes = sorted({c for e in exps for c in e.per_class})
    if classes:
        out.append(
            (
                "Per-class F1 on test",
                _md_table(
                    ["class"] + [e.name for e in exps],
                    [[c] + [f"{e.per_class[c]['f1']:.3f}" if c in e.per_class else "" for e in exps] for c in classes],
                ),
            )
        )
    for title, fig in (
        ("Validation curves", curves_figure(exps)),
        ("Confusion matrices (test)", confusion_figure(exps)),
    ):
        if fig:
            out.append((title, fig))

    def cell(v):
        return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else "" if v is None else str(v)

    rows = [[e.name, m, *(cell(c.get(k)) for k in CACHE_FIELDS)] for e in exps for m, c in e.caches.items()]
    out.append(("Caches", _md_table(["experiment", "cache", *CACHE_FIELDS], rows)))
    return out


def write(exps: list[Experiment], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = sections(exps)
    if out.suffix == ".html":
        import markdown_it

        md = markdown_it.MarkdownIt("commonmark").enable("table")
        body = []
        for title, content in parts:
            body.append(f"<h2>{title}</h2>")
            body.append(
                md.render(content)
                if isinstance(content, str)
                else f'<img alt="{title}" src="data:image/png;base64,{base64.b64encode(content).decode()}">'
            )
        style = (
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}"
        )
        out.write_text(
            f"<!doctype html><meta charset=utf-8><title>avcache experiments</title><style>{style}</style>"
            f"<h1>Experiments</h1>{''.join(body)}\n"
        )
        return out
    figures = out.with_name(out.stem + "_files")
    text = ["# Experiments\n"]
    for title, content in parts:
        if isinstance(content, bytes):
            figures.mkdir(exist_ok=True)
            name = title.split(" (")[0].lower().replace(" ", "_") + ".png"
            (figures / name).write_bytes(content)
            content = f"![{title}]({figures.name}/{name})\n"
        text.append(f"## {title}\n\n{content}")
    out.write_text("\n".join(text))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiments", nargs="*", help="names or revisions (default: all of HEAD, and the workspace)")
    ap.add_argument("--out", type=Path, default=Path("results/report.html"), help=".html or .md")
    a = ap.parse_args(argv)
    exps = collect(a.experiments or None)
    if not exps:
        raise SystemExit("report: no experiment with results/metrics.json; run `dvc exp run` first")
    print(f"report: {counted(len(exps), 'experiment')} -> {write(exps, a.out)}")


if __name__ == "__main__":
    main()
