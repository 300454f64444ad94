"""Training curves as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from edgecnn.core.fileio import atomic_path


def _panels(history: dict[str, list[float]]) -> list[str]:
    """'loss' first, then every other training curve Keras logged (accuracy, top5, per-output losses)."""
    others = [k for k in history if not k.startswith("val_") and k not in ("loss", "lr", "images_per_sec")]
    return ["loss", *others]


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(history)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + metric in history:
                ax.plot(
                    range(1, len(history[prefix + metric]) + 1),
                    history[prefix + metric],
                    style,
                    label=(prefix or "train_") + metric,
                )
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
