"""The optimization comparison: markdown + JSON + a Pareto plot of accuracy against int8 latency."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edgecnn.core.fileio import atomic_path, write_text


def markdown(rows: list[Any]) -> str:
    base = rows[0]
    title = {"top1": "top-1", "map50": "mAP@0.5", "miou": "mean IoU"}.get(base.metric, base.metric)
    head = (
        "model",
        f"keras {title}",
        f"tflite {title}",
        "size KiB",
        "gzip KiB",
        "vs float32 gzip",
        "vs float32 file",
        "sparsity",
        "distinct values",
        "p50 ms",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        keras_score = f"{100 * r.keras_score:.2f}%" if r.keras_score is not None else "-"
        lines.append(
            f"| {r.name} | {keras_score} | {100 * r.tflite_score:.2f}% | {r.tflite_bytes / 1024:.1f} | "
            f"{r.gzip_bytes / 1024:.1f} | {base.gzip_bytes / r.gzip_bytes:.1f}x | "
            f"{base.tflite_bytes / r.gzip_bytes:.1f}x | "
            f"{100 * r.sparsity:.0f}% | "
            f"{r.unique_values} | {r.latency_p50_ms:.3f} |"
        )
    return "\n".join(lines) + "\n"


def pareto_front(rows: list[Any]) -> list[str]:
    """Names of the rows no other row beats on both accuracy and latency."""
    front = []
    for r in rows:
        dominated = any(
            o.tflite_score >= r.tflite_score
            and o.latency_p50_ms <= r.latency_p50_ms
            and (o.tflite_score > r.tflite_score or o.latency_p50_ms < r.latency_p50_ms)
            for o in rows
        )
        if not dominated:
            front.append(r.name)
    return front


def plot(rows: list[Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = set(pareto_front(rows))
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(
            r.latency_p50_ms,
            100 * r.tflite_score,
            s=20 + r.gzip_bytes / 1024,
            color="tab:red" if r.name in front else "tab:blue",
            alpha=0.7,
        )
        ax.annotate(
            r.name, (r.latency_p50_ms, 100 * r.tflite_score), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    ax.set_xlabel("latency p50 (ms, LiteRT)")
    ax.set_ylabel(f"{rows[0].metric} of the .tflite (%)")
    ax.set_title("accuracy vs latency (red: Pareto front; size ~ gzip bytes)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_report(rows: list[Any], out: Path) -> None:
    write_text(
        out / "report.md",
        "# Optimization report\n\n"
        + markdown(rows)
        + f"\nPareto front (accuracy vs latency): {', '.join(pareto_front(rows))}\n",
    )
    write_text(out / "report.json", json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    plot(rows, out / "pareto.png")
