"""Training speed and accuracy at AVE's real shapes, on synthetic data with a learnable signal.

    python bench/train_speed.py                                  # everything (hours: docs/benchmarks.md)
    python bench/train_speed.py --quick --out /tmp/ts-quick      # every part, small (minutes)
    AVCACHE_KERNELS=native python bench/train_speed.py --only timing   # epoch times, native kernels
    python bench/train_speed.py --report                         # the tables from what is saved
    python bench/train_speed.py --only runs --videos 600 150 150 # docs/benchmarks.md's runs (~30 min a model and seed)

Data: 3339 / 402 / 402 videos (AVE's splits), audio 10x128, visual 10x7x7x512, 28 classes +
background. A video has one class and an event interval; an event segment is one where the
class is both heard (an audio prototype) and seen (a visual prototype at one of the 49 regions);
outside it, heard-only and seen-only distractor segments are background. Classes share audio
prototypes in pairs and visual prototypes in other pairs, so neither modality alone separates
them, and per-video amplitude and noise make some videos hard.

Parts (``--only``):
  timing  seconds per epoch, side by side in one process: the reference's loop (re-implemented:
          per-sample copies into numpy batch buffers, fixed order, softmax outputs into
          MultiLabelSoftMarginLoss, its test pass every 5 epochs counted as 1/5 per epoch), and
          the project's loop (its validation every epoch included) in fp32 and bf16.
  seeds   one step of 3 seeds one after the other vs their parameters stacked with torch.func.
  runs    per model and loss, one fp32 run. The reference recipe (reference loss, fp32) runs all
          --epochs; other runs stop at --stop-patience (default: the largest --patience). Val
          accuracy after every epoch, and test accuracy of every new best-on-val model, are
          recorded; a run with patience P is exactly the first epochs of the longer run
          (tests/test_train.py), so each P's stopping epoch, selected model, accuracies and time
          follow from it. Time is the sum of the measured epochs up to the stop; "x ref" divides
          it by the whole reference-recipe run.
Each part's result is saved under --out as it finishes; a rerun skips what is saved.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from avcache.kernels import describe  # noqa: E402
from avcache.localization import train as T  # noqa: E402  (first: sets the portable kernels before torch loads)
from avcache.localization.models import build, predict  # noqa: E402

CLASSES, SEGMENTS, REGIONS, DA, DV = 28, 10, 49, 128, 512


def make_data(n_train: int, n_val: int, n_test: int, seed: int = 0, signal: float = 10.0) -> T.Data:
    """AVE-shaped synthetic features (float32, on the CPU; ~4.2 GB at AVE's size).

    ``signal`` scales the prototypes' amplitudes. At 1, AV-att memorised 600 training videos with
    cross-entropy (train 0.97, val 0.35) and the reference loss stayed on all-background for 300
    epochs; at 4 cross-entropy reached val 0.83 in 6 epochs but the reference loss had not moved
    after 15; at 10 both learn (reference loss: val 0.56 after 12 epochs), as on AVE's real features.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    proto_a = unit(np.repeat(rng.normal(size=(CLASSES // 2, DA)), 2, 0) + 0.7 * rng.normal(size=(CLASSES, DA)))
    proto_v = unit(
        np.maximum(np.tile(rng.normal(size=(CLASSES // 2, DV)), (2, 1)) + 0.7 * rng.normal(size=(CLASSES, DV)), 0)
    )
    cls = rng.integers(0, CLASSES, n)
    start = rng.integers(0, 3, n)
    length = rng.integers(5, 11 - start)
    t = np.arange(SEGMENTS)
    event = (t >= start[:, None]) & (t < (start + length)[:, None])
    u = rng.random((n, SEGMENTS))
    heard = event | (~event & (u < 0.3))
    seen = event | (~event & (u > 0.7))
    amp_a = rng.uniform(0.4, 1.4, n) * 3.0 * signal
    amp_v = rng.uniform(0.4, 1.4, n) * 6.0 * signal
    where = rng.integers(0, REGIONS, n)
    audio = rng.standard_normal((n, SEGMENTS, DA), dtype=np.float32)
    audio += rng.standard_normal((n, 1, DA), dtype=np.float32)  # a per-video offset: memorisable, uninformative
    audio += (heard * amp_a[:, None])[..., None].astype(np.float32) * proto_a[cls][:, None].astype(np.float32)
    visual = np.empty((n, SEGMENTS, REGIONS, DV), np.float32)
    for i in range(0, n, 256):  # in chunks: no second 4-GB temporary
        x = rng.standard_normal((min(256, n - i), SEGMENTS, REGIONS, DV), dtype=np.float32)
        np.maximum(x, 0, out=x)
        visual[i : i + len(x)] = x
    for i in range(n):
        visual[i, seen[i], where[i]] += (amp_v[i] * proto_v[cls[i]]).astype(np.float32)
    labels = np.zeros((n, SEGMENTS, CLASSES + 1), np.float32)
    labels[np.arange(n)[:, None], t, np.where(event, cls[:, None], CLASSES)] = 1
    idx = torch.arange(n)
    return T.Data(
        torch.from_numpy(audio),
        torch.from_numpy(visual),
        torch.from_numpy(labels),
        {"train": idx[:n_train], "val": idx[n_train : n_train + n_val], "test": idx[n_train + n_val :]},
    )


def reference_loop(name: str, data: T.Data, epochs: int, batch_size: int = 64) -> list[float]:
    """Seconds per epoch of the reference's loop: a fixed training order, each batch built by
    copying samples one by one into numpy buffers, softmax outputs into MultiLabelSoftMarginLoss,
    scheduler stepped before the optimiser, and its evaluation (on test, one batch) every 5 epochs,
    counted here as a fifth of its time per epoch."""
    torch.manual_seed(0)
    model = build(name, **data.shapes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=15000, gamma=0.1)
    loss_fn = torch.nn.MultiLabelSoftMarginLoss()
    a_np, v_np, y_np = data.audio.numpy(), data.visual.numpy(), data.labels.numpy()
    order = data.split("train").tolist()
    a_b, v_b, y_b = (np.zeros((batch_size, *x.shape[1:]), np.float32) for x in (a_np, v_np, y_np))
    times = []
    warnings.filterwarnings("ignore", "Detected call of `lr_scheduler")  # the reference's order
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for i in range(len(order) // batch_size):
            for k in range(batch_size):
                j = order[i * batch_size + k]
                v_b[k], a_b[k], y_b[k] = v_np[j], a_np[j], y_np[j]
            model.zero_grad()
            scores = model(torch.from_numpy(a_b).float(), torch.from_numpy(v_b).float())
            loss = loss_fn(scores, torch.from_numpy(y_b).float())
            loss.detach().numpy()
            loss.backward()
            sched.step()
            opt.step()
        t1 = time.perf_counter()
        model.eval()
        test = data.split("test").tolist()
        ta, tv = np.stack([a_np[j] for j in test]), np.stack([v_np[j] for j in test])
        model(torch.from_numpy(ta), torch.from_numpy(tv)).detach().numpy().argmax(-1)
        times.append(t1 - t0 + (time.perf_counter() - t1) / 5)
    return times


class Recorder:
    """The on_epoch hook: each epoch's seconds (the hook's own time excluded), val accuracy, and the
    test accuracy of every new best-on-val model (for the benchmark only; training never sees it)."""

    def __init__(self, data: T.Data, with_test: bool = True):
        self.data, self.with_test = data, with_test
        self.seconds, self.val, self.test_at = [], [], {}
        self.mark = time.perf_counter()

    def __call__(self, epoch, model, row):
        self.seconds.append(time.perf_counter() - self.mark)
        self.val.append(row["val/acc"])
        if self.with_test and row["val/acc"] > max(self.val[:-1], default=-1):
            test = self.data.split("test")
            self.test_at[epoch] = T.segment_accuracy(
                predict(model, self.data.audio, self.data.visual, test), self.data.labels[test]
            )
        self.mark = time.perf_counter()


def project_loop(name, data, recipe: T.Recipe, with_test=True) -> Recorder:
    rec = Recorder(data, with_test)
    T.train_one(name, {}, data, recipe, recipe.seeds[0], None, progress=False, on_epoch=rec)
    return rec


def seeds_step(name: str, data: T.Data, steps: int, n_seeds: int = 3, batch_size: int = 64) -> dict:
    """ms per training step of ``n_seeds`` seeds: one after the other vs stacked with torch.func,
    and whether the stacked gradients are the per-seed ones (before any step)."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    loss_fn = torch.nn.functional.multilabel_soft_margin_loss  # on the softmax outputs: the reference loss
    models = [build(name, **data.shapes).to(data.device) for _ in range(n_seeds)]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    params, buffers = stack_module_state(models)
    stacked_opt = torch.optim.Adam(params.values(), lr=1e-3)  # elementwise: one Adam for all seeds
    meta = build(name, **data.shapes).to("meta")
    idx = data.split("train")[: n_seeds * batch_size].view(n_seeds, batch_size)
    batches = [[x[i] for x in (data.audio, data.visual, data.labels)] for i in idx]
    a, v, y = (torch.stack(x) for x in zip(*batches))
    seed_grad = vmap(grad(lambda p, b, a, v, y: loss_fn(functional_call(meta, (p, b), (a, v)), y)))

    def sequential():
        for m, o, (a_, v_, y_) in zip(models, opts, batches):
            o.zero_grad()
            loss_fn(m(a_, v_), y_).backward()
            o.step()

    def stacked():
        g = seed_grad(params, buffers, a, v, y)
        for k, p in params.items():
            p.grad = g[k]
        stacked_opt.step()

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LSTM has no vmap batching rule: torch warns that it loops
        g = seed_grad(params, buffers, a, v, y)
        for m, (a_, v_, y_) in zip(models, batches):
            loss_fn(m(a_, v_), y_).backward()
        out["same_gradients"] = all(
            torch.allclose(g[k][i], p.grad, rtol=1e-3, atol=1e-7)
            for i, m in enumerate(models)
            for k, p in m.named_parameters()
        )
        for f in (sequential, stacked):
            f()  # warm-up
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                f()
                times.append(time.perf_counter() - t0)
            out[f.__name__] = 1000 * statistics.median(times)
    return out


def environment(device) -> dict:
    return {
        "kernels": describe(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
    }


def save(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/train_speed"), help="results folder (resumable)")
    ap.add_argument("--only", nargs="+", choices=["timing", "seeds", "runs"], default=["timing", "seeds", "runs"])
    ap.add_argument("--models", nargs="+", default=["av_att", "dmrn"])
    ap.add_argument("--losses", nargs="+", default=["reference", "cross_entropy"])
    ap.add_argument("--videos", nargs=3, type=int, default=[3339, 402, 402], metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument(
        "--epochs",
        type=int,
        default=300,
        help="length of each run (the reference recipe: 300); "
        "runs of other lengths are kept side by side, the longest reference-loss fp32 run is the yardstick",
    )
    ap.add_argument("--patience", nargs="+", type=int, default=[5, 10, 20])
    ap.add_argument(
        "--stop-patience",
        type=int,
        default=None,
        help="patience that ends runs other than the reference recipe (default: the largest --patience)",
    )
    ap.add_argument("--signal", type=float, default=10.0, help="amplitude of the learnable signal (make_data)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="model seeds of the runs (the data is fixed)")
    ap.add_argument("--bf16-runs", action="store_true", help="also full bf16 runs (for hardware where it pays)")
    ap.add_argument("--timing-epochs", type=int, default=2)
    ap.add_argument("--seed-steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="a small smoke run of every part")
    ap.add_argument("--report", action="store_true", help="only print the tables from --out")
    a = ap.parse_args()
    if a.quick:
        a.videos, a.epochs, a.patience, a.timing_epochs, a.seed_steps = [192, 64, 64], 6, [2], 1, 1
    a.stop_patience = a.stop_patience or max(a.patience)
    device = T.resolve_device(a.device)
    env = environment(device)
    # the stages' own (train/__init__: portable but MKL's fast branch), the extraction kernels, or native
    kernels = (
        "native" if env["kernels"] == "native" else "portable" if "MKL_CBWR=COMPATIBLE" in env["kernels"] else "train"
    )
    tag = f"{a.videos[0]}v-{kernels}-{device.type}" + (f"-s{a.signal:g}" if a.signal != 10 else "")
    if not a.report:
        print(f"{env}\nmaking data {a.videos} ...", flush=True)
        t0 = time.perf_counter()
        data = make_data(*a.videos, signal=a.signal).to(device)
        print(f"  {time.perf_counter() - t0:.0f} s; background {data.labels[..., -1].mean().item():.0%}", flush=True)
        for name in a.models:
            if "timing" in a.only and not (path := a.out / f"timing-{name}-{tag}.json").exists():
                row = {"reference_loop": [], "fp32": [], "bf16": []}
                for _ in range(a.timing_epochs):  # interleaved, so background load hits all alike
                    if device.type == "cpu":
                        row["reference_loop"] += reference_loop(name, data, 1)
                    for prec in ("fp32", "bf16"):
                        row[prec] += project_loop(
                            name, data, T.Recipe(epochs=1, seeds=[0], precision=prec), with_test=False
                        ).seconds
                    print(f"  timing {name}: { {k: [round(x, 1) for x in v] for k, v in row.items()} }", flush=True)
                save(path, {"model": name, "env": env, **row})
            if "seeds" in a.only and not (path := a.out / f"seeds-{name}-{tag}.json").exists():
                row = seeds_step(name, data, a.seed_steps)
                print(f"  seeds {name}: {row}", flush=True)
                save(path, {"model": name, "env": env, **row})
            if "runs" in a.only:
                for seed, loss, prec in itertools.product(a.seeds, a.losses, ["fp32"] + ["bf16"] * a.bf16_runs):
                    path = a.out / f"run-{name}-{loss}-{prec}-{a.epochs}e{f'-seed{seed}' * bool(seed)}-{tag}.json"
                    if path.exists():
                        continue
                    print(f"  run {name} {loss} {prec} seed {seed}: {a.epochs} epochs", flush=True)
                    yardstick = (loss, prec) == ("reference", "fp32")
                    rec = project_loop(
                        name,
                        data,
                        T.Recipe(
                            epochs=a.epochs,
                            seeds=[seed],
                            loss=loss,
                            precision=prec,
                            patience=None if yardstick else a.stop_patience,
                        ),
                    )
                    save(
                        path,
                        {
                            "model": name,
                            "loss": loss,
                            "precision": prec,
                            "epochs": a.epochs,
                            "seed": seed,
                            "env": env,
                            "seconds": rec.seconds,
                            "val": rec.val,
                            "test_at": {str(k): v for k, v in rec.test_at.items()},
                        },
                    )
    report(a, tag)


def report(a, tag: str) -> None:
    load = lambda path: json.loads(path.read_text()) if path.exists() else None  # noqa: E731
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    videos = tag.split("-")[0]  # every kernel setting and device measured at this size
    print(
        f"\n### Seconds per epoch ({videos.rstrip('v')} training videos)\n\n"
        "| model | kernels, device | reference loop | project fp32 | project bf16 |\n|---|---|---|---|---|"
    )
    for path in sorted(a.out.glob(f"timing-*-{videos}-*.json")):
        t = load(path)
        print(
            f"| {t['model']} | {path.stem.split('-', 3)[3]} | {med(t['reference_loop']):.1f} | {med(t['fp32']):.1f} "
            f"| {med(t['bf16']):.1f} |"
        )
    print(
        "\n### Three seeds, one training step at batch 64 (ms)\n\n"
        "| model | kernels, device | one after the other | stacked (torch.func) | same gradients |\n"
        "|---|---|---|---|---|"
    )
    for path in sorted(a.out.glob(f"seeds-*-{videos}-*.json")):
        t = load(path)
        print(
            f"| {t['model']} | {path.stem.split('-', 3)[3]} | {t['sequential']:.0f} | {t['stacked']:.0f} "
            f"| {t.get('same_gradients', '?')} |"
        )
    print(f"\n### Time to a val-selected model ({tag})")
    every = [load(path) for path in sorted(a.out.glob(f"run-*-{tag}.json"))]
    for name, seed in sorted({(r["model"], r.get("seed", 0)) for r in every if r["model"] in a.models}):
        runs = [r for r in every if (r["model"], r.get("seed", 0)) == (name, seed)]
        print(
            f"\n**{name}, seed {seed}**\n"
            "\n| model | loss | precision | run epochs | patience | s/epoch | best epoch | stop epoch | val acc "
            "| test acc | time (min) | x ref |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
        )
        refs = [r for r in runs if (r["loss"], r["precision"]) == ("reference", "fp32")]
        ref = max(refs, key=lambda r: r["epochs"], default=None)  # the reference recipe
        ref_time = sum(ref["seconds"]) if ref else float("nan")
        ref_val = max(ref["val"]) if ref else float("nan")
        fast = []
        for run in sorted(runs, key=lambda r: (r["loss"] != "reference", r["loss"], r["precision"], -r["epochs"])):
            full = len(run["val"]) == run["epochs"]
            for p in [None] + a.patience:
                if not full and (p is None or p > a.stop_patience):
                    continue  # the run stopped before it could tell
                best, stop = T.Patience(p).replay(run["val"])  # training's own rule
                secs = sum(run["seconds"][: stop + 1])
                val, test = run["val"][best], run["test_at"][str(best)]
                print(
                    f"| {name} | {run['loss']} | {run['precision']} | {run['epochs']} | {p or 'off'} "
                    f"| {med(run['seconds']):.1f} | {best} | {stop} | {val:.4f} | {test:.4f} | {secs / 60:.1f} "
                    f"| {secs / ref_time:.3f} |"
                )
                if val >= ref_val - 0.005 and secs <= ref_time / 6:
                    fast.append(f"{run['loss']}/{run['precision']}/patience {p}")
        if ref and ref_val <= ref["val"][0]:
            print(
                f"\n{name}, seed {seed}: the {ref['epochs']}-epoch reference recipe never beat its first epoch "
                f"(val {ref_val:.4f}): it did not learn, so there is nothing to compare against\n"
            )
        elif ref:
            print(
                f"\n{name}, seed {seed}: val acc within 0.5 points of the {ref['epochs']}-epoch reference recipe's "
                f"({ref_val:.4f}) in at most 1/6 of its time ({ref_time / 60:.0f} min): {', '.join(fast) or 'none'}\n"
            )


if __name__ == "__main__":
    main()
