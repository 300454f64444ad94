"""Batch size and generalization: the same model on the same data at 4 batch sizes, with the learning rate
fixed, with the linear scaling rule (lr x batch / 32), and with the rule after a 5-epoch warmup (Goyal et
al. 2017), for the same number of epochs.

    .venv/bin/python training/batch_size_study.py [--arch lenet5] [--epochs 20] [--seeds 0 1]

For each run: validation top-1, training top-1 (the final model on the training images, no augmentation)
and their gap, optimizer updates and training seconds; means over the seeds (a seed picks the validation
split as well as the initial weights and the data order, so the spread includes the split's). Writes
training/results/batch_size_study.{csv,md,png}.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "training" / "results"
BATCHES = (16, 64, 256, 1024)
BASE_BATCH, BASE_LR = 32, 1e-3  # the default recipe's batch and learning rate
# rule name -> (learning rate at a batch size, warmup epochs)
RULES = {
    "fixed lr": (lambda batch: BASE_LR, 0.0),
    "linear rule": (lambda batch: BASE_LR * batch / BASE_BATCH, 0.0),
    "linear + warmup": (lambda batch: BASE_LR * batch / BASE_BATCH, 5.0),
}


def run_one(arch: str, data: str, epochs: int, batch: int, lr: float, warmup: float, seed: int, out: Path) -> dict:
    """Train, then measure the final model on both halves of the split (clean images)."""
    from edgecnn.core.config import TrainConfig
    from edgecnn.data import load_split
    from edgecnn.pipelines.train import train
    from edgecnn.tasks import task_of_arch
    from edgecnn.trainer.load import load_keras

    config = TrainConfig(
        arch=arch, data=data, epochs=epochs, batch=batch, lr=lr, warmup_epochs=warmup, seed=seed, out=str(out)
    )
    start = time.perf_counter()
    result = train(config, verbose=0)
    seconds = time.perf_counter() - start
    model, info = load_keras(result.model_path)
    split = load_split(data, "classify", config.img, config.channels, seed, config.val_fraction)
    train_top1 = task_of_arch(arch).evaluate_keras(model, info, split.train)["top1"]
    val_top1 = result.metrics["val_top1"]
    return {
        "val_top1": val_top1,
        "train_top1": train_top1,
        "gap": train_top1 - val_top1,
        "updates": result.metrics["optimizer_steps"],
        "seconds": seconds,
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Means over seeds, one row per (rule, batch)."""
    table = []
    for rule in RULES:
        for batch in BATCHES:
            group = [r for r in rows if r["rule"] == rule and r["batch"] == batch]
            mean = {k: statistics.mean(r[k] for r in group) for k in ("val_top1", "train_top1", "gap", "seconds")}
            spread = max(r["val_top1"] for r in group) - min(r["val_top1"] for r in group)
            table.append(
                {"rule": rule, "batch": batch, "lr": group[0]["lr"], "updates": group[0]["updates"], **mean,
                 "val_spread": spread, "seeds": len(group)}
            )  # fmt: skip
    return table


def markdown(table: list[dict], arch: str, epochs: int) -> str:
    lines = [
        f"{arch} on digits, {epochs} epochs each, mean over {table[0]['seeds']} seeds (val spread = max - min)",
        "",
        "| lr rule | batch | peak lr | updates | val top-1 | train top-1 | train - val gap | val spread | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['rule']} | {r['batch']} | {r['lr']:g} | {r['updates']} | {100 * r['val_top1']:.2f}% | "
            f"{100 * r['train_top1']:.2f}% | {100 * r['gap']:+.2f} | {100 * r['val_spread']:.2f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for rule, style in zip(RULES, ("o-", "s--", "^:"), strict=True):
        rows = [r for r in table if r["rule"] == rule]
        batches = [r["batch"] for r in rows]
        axes[0].plot(batches, [100 * r["val_top1"] for r in rows], style, label=rule)
        axes[1].plot(batches, [100 * r["gap"] for r in rows], style, label=rule)
    for ax, title in zip(axes, ("validation top-1 (%)", "train - validation top-1 (points)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(BATCHES, [str(b) for b in BATCHES])
        ax.set_xlabel("batch size")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default=str(ROOT / "runs" / "batch_size_study"))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for rule, (lr_of, warmup) in RULES.items():
        for batch in BATCHES:
            for seed in args.seeds:
                lr = lr_of(batch)
                out = Path(args.out) / f"{rule.replace(' ', '').replace('+', '_')}_b{batch}_s{seed}"
                row = run_one(args.arch, args.data, args.epochs, batch, lr, warmup, seed, out)
                rows.append({"rule": rule, "batch": batch, "lr": lr, "warmup_epochs": warmup, "seed": seed, **row})
                print(
                    f"{rule:15s} batch {batch:5d} lr {lr:<8g} seed {seed}: val {100 * row['val_top1']:.2f}% "
                    f"train {100 * row['train_top1']:.2f}% ({row['updates']} updates, {row['seconds']:.0f} s)",
                    flush=True,
                )
    with (RESULTS / "batch_size_study.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = summarize(rows)
    text = markdown(table, args.arch, args.epochs)
    (RESULTS / "batch_size_study.md").write_text(text)
    plot(table, RESULTS / "batch_size_study.png")
    print(text)


if __name__ == "__main__":
    main()
