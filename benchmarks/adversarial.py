"""Adversarial robustness on digits: standard against adversarial training, float and int8, FGSM and PGD.

Trains LeNet-5 twice with the digits recipe (training/lenet5_digits.yaml), once plainly and once with
``--adversarial fgsm --eps E``, converts both to int8, and runs ``edgecnn eval --attack`` on the four
models: clean top-1, FGSM and PGD top-1 at the same eps (white box on each Keras model; the int8 .tflite
gets the images crafted on its own source model). Targets: FGSM drops the standard model's top-1 by a
measured amount; adversarial training recovers >= 20 points of FGSM top-1 at <= 2 points clean cost.

    .venv/bin/python benchmarks/adversarial.py [--eps 0.1] [--steps 10] [--epochs N] [--arch lenet5] [--retrain]

``--epochs`` trains both models for N epochs (default: the recipe's 20); ``--train-eps`` is the
adversarial training budget (default: the attack's ``--eps``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, ROOT

RECIPE = ROOT / "training" / "lenet5_digits.yaml"


def edgecnn(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"edgecnn {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def trained(name: str, arch: str, extra: list[str], retrain: bool) -> Path:
    run = CACHE / "adversarial" / "_".join([name, *(e.lstrip("-") for e in extra)])
    if retrain or not (run / "model.keras").is_file():
        print(f"training {name} ...", flush=True)
        edgecnn("train", "--config", str(RECIPE), "--arch", arch, "--out", str(run), *extra)
    if retrain or not (run / "model_int8.tflite").is_file():
        edgecnn("convert", str(run / "model.keras"), "--int8", "--no-eval")
    return run


def attacked(model: Path, attack: str, eps: float, steps: int) -> dict:
    args = ["eval", str(model), "--attack", attack, "--eps", str(eps), "--json"]
    args += ["--steps", str(steps)] if attack == "pgd" else []
    return json.loads(edgecnn(*args).strip().splitlines()[-1])["robustness"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps")
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--epochs", type=int, default=None, help="both models (default: the recipe's)")
    parser.add_argument("--train-eps", type=float, default=None, help="adversarial training eps (default --eps)")
    parser.add_argument("--retrain", action="store_true", help="train again even if the runs exist")
    args = parser.parse_args()
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    train_eps = args.train_eps or args.eps
    runs = {
        "standard": trained("standard", args.arch, epochs, args.retrain),
        f"adversarial (FGSM eps={train_eps:g})": trained(
            "fgsm", args.arch, [*epochs, "--adversarial", "fgsm", "--eps", str(train_eps)], args.retrain
        ),
    }
    rows = []
    for training, run in runs.items():
        for fmt, model in (("float32 (Keras)", run / "model.keras"), ("int8 .tflite", run / "model_int8.tflite")):
            print(f"attacking {training} {fmt} ...", flush=True)
            fgsm, pgd = attacked(model, "fgsm", args.eps, args.steps), attacked(model, "pgd", args.eps, args.steps)
            rows.append(
                {
                    "training": training,
                    "model": fmt,
                    "clean": fgsm["clean_top1"],
                    "fgsm": fgsm["adversarial_top1"],
                    "pgd": pgd["adversarial_top1"],
                    "images": fgsm["images"],
                }
            )
    table = [
        f"| training | model | clean top-1 | FGSM top-1 | PGD-{args.steps} top-1 |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| {r['training']} | {r['model']} | {100 * r['clean']:.2f}% | {100 * r['fgsm']:.2f}% | {100 * r['pgd']:.2f}% |"
        for r in rows
    ]
    std, adv = rows[0], rows[2]  # float rows
    drop = 100 * (std["clean"] - std["fgsm"])
    recovered = 100 * (adv["fgsm"] - std["fgsm"])
    cost = 100 * (std["clean"] - adv["clean"])
    verdict = [
        f"FGSM eps={args.eps:g} drops the standard model's top-1 by {drop:.2f} points "
        f"({100 * std['clean']:.2f}% -> {100 * std['fgsm']:.2f}%, {std['images']} validation images).",
        f"Adversarial training recovers {recovered:.2f} points of FGSM top-1 (target >= 20) at a clean cost of "
        f"{cost:.2f} points (target <= 2): {'met' if recovered >= 20 and cost <= 2 else 'NOT met'}.",
    ]
    command = f"python benchmarks/adversarial.py --eps {args.eps:g} --steps {args.steps} --arch {args.arch}"
    command += f" --epochs {args.epochs}" if args.epochs else ""
    command += f" --train-eps {args.train_eps:g}" if args.train_eps else ""
    text = "\n".join([f"<!-- {time.strftime('%Y-%m-%d')}: {command} -->", "", *table, "", *verdict, ""])
    (ROOT / "benchmarks" / "results" / "adversarial.md").write_text(text)
    record = {"command": command, "eps": args.eps, "steps": args.steps, "rows": rows, "verdict": verdict}
    (ROOT / "benchmarks" / "results" / "adversarial.json").write_text(json.dumps(record, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
