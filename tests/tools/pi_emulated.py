#!/usr/bin/env python3
"""A Raspberry Pi in a box: edgecnn's light install, run in an emulated Raspberry Pi OS.

Raspberry Pi OS is Debian bookworm for arm64 (64-bit) or armhf (32-bit). This script builds (once, then
reuses) a ``debootstrap --variant=minbase bookworm`` root folder for that architecture, runs it through
qemu-user and binfmt_misc in a ``chroot``, installs edgecnn there as user ``pi`` with the same
``demo/install_pi.sh`` a Pi user runs (numpy, OpenCV, LiteRT: no TensorFlow), then runs
``edgecnn doctor``, ``benchmark``, ``eval`` and a headless ``demo`` on int8 models of the three tasks
that the host's venv (which has TensorFlow) prepares. It prints one table: step, status, seconds and
the reason of a failure. Exit status: 0 every step passed, 1 a step failed, 2 it cannot run here (one
line says why and what to do), 3 nothing failed but some steps need piwheels.org (armhf only).

    sudo python3 tests/tools/pi_emulated.py                 # arm64, root folder cached in /var/cache/edgecnn-pi
    sudo python3 tests/tools/pi_emulated.py --arch armhf    # 32-bit Raspberry Pi OS
    sudo python3 tests/tools/pi_emulated.py --install-only  # the install checks only (no models, no commands)

What emulation shows: that the install resolves to wheels for the board's CPU, that they import and run
(as a Cortex-A72, the Raspberry Pi 4's core, which lacks the dot-product instructions of newer cores),
that the files the host writes load there, and how the commands behave. What it cannot show: timings,
camera stacks, USB devices such as the Coral Edge TPU.

The root folder gets a Raspberry Pi 4's /proc/cpuinfo: under qemu-user the host's x86 one shows through,
and LiteRT's CPU detection (cpuinfo, used by XNNPACK) crashes on it with a segmentation fault.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = "/var/cache/edgecnn-pi"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PYPI = "https://pypi.org/simple/pip/"
PIWHEELS = "https://www.piwheels.org/simple/numpy/"
SUITE = "bookworm"
HOST_TOOLS = ("debootstrap", "qemu-user-static", "binfmt-support")
ROOT_VERSION = 1  # bump when the root folder's recipe changes: cached roots are rebuilt
PREP_VERSION = 1  # bump when the host-prepared models or data change
PI = "pi"
PI_UID = 1000
HOME = f"/home/{PI}"
VENV = f"{HOME}/edgecnn-venv"  # where demo/install_pi.sh puts the venv
WORK = f"{HOME}/work"  # models, clips and datasets from the host
SRC = f"{HOME}/edgecnn"  # the checkout, as a Pi user clones it
STEP_TIMEOUT = 900
INSTALL_TIMEOUT = 2400
FRAMES = 30  # demo --max-frames
# Not allowed in the light install: the runtime must not need them.
HEAVY = ("tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tf-nightly", "torch", "jax", "scikit-learn")
# The light install's requirements on 32-bit Raspberry Pi OS (pyproject.toml + demo/install_pi.sh).
ARMV7L_REQUIREMENTS = (
    "numpy<2",
    "opencv-python-headless>=4.8",
    "pyyaml>=6.0",
    "tflite-runtime",
    "flatbuffers>=23.5",
    "tqdm>=4.60",
)
# The Raspberry Pi 4's Cortex-A72, as its /proc/cpuinfo shows it on each OS (one entry per host CPU).
PI4_CORE = {
    "arm64": (
        "BogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n"
    ),
    "armhf": (
        "model name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\n"
        "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n"
        "CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n"
    ),
}
PI4_BOARD = "Hardware\t: BCM2711\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"


@dataclass(frozen=True)
class Arch:
    debian: str  # Debian architecture
    machine: str  # uname -m inside
    qemu: str  # binfmt_misc entry and qemu binary name
    qemu_cpu: str  # QEMU_CPU: the closest core qemu-user offers to the Pi 4's Cortex-A72
    packages: tuple[str, ...]  # debootstrap --include


ARCHES = {
    "arm64": Arch("arm64", "aarch64", "qemu-aarch64", "cortex-a72", ("python3", "python3-venv", "python3-pip")),
    # qemu-arm has no cortex-a72; "max" is an ARMv8 core in AArch32 mode, as the Pi 4 runs 32-bit Pi OS.
    # python3-numpy: Debian's numpy 1.24 stands in for piwheels' in the tflite-runtime check.
    "armhf": Arch("armhf", "armv7l", "qemu-arm", "max", ("python3", "python3-venv", "python3-pip", "python3-numpy")),
}

PASSED, FAILED, SKIPPED, NEEDS_PIWHEELS = "passed", "failed", "skipped", "needs piwheels"


# ----------------------------------------------------------------------------------------- refusals
class Refusal(Exception):
    """It cannot run here: one line naming the problem and the fix, exit status 2."""


def refuse_line(text: str) -> str:
    return "pi_emulated: cannot run: " + " ".join(text.split())


class StepFailed(Exception):
    """A step failed; the message is its reason (one line)."""


class NeedsPiwheels(Exception):
    """A step cannot run on this machine because it needs piwheels.org; the message says why."""


def first_error(output: str, returncode: int | None = None) -> str:
    """The line that says what went wrong: qemu's signal report, pip's or edgecnn's first error line, a
    traceback's last line, else the last line of the output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("qemu: uncaught target signal"):
            return line
    for line in lines:
        if re.match(r"^(ERROR|E):|^error:|^edgecnn\b.*\berror\b|^install_pi\.sh:", line):
            return line
    if returncode is not None and returncode > 128:
        name = signal.Signals(returncode - 128).name if returncode - 128 in signal.valid_signals() else "?"
        return f"killed by signal {returncode - 128} ({name})" + (f": {lines[-1]}" if lines else "")
    if lines:
        return lines[-1]
    return f"exit status {returncode}" if returncode is not None else "no output"


def built_from_source(pip_log: str) -> list[str]:
    """The packages pip built into wheels during an install (``edgecnn`` itself, the checkout, excepted)."""
    names: set[str] = set()
    for match in re.finditer(r"^\s*Building wheels? for ([^\s:(]+)", pip_log, re.M):
        if match.group(1) != "collected":
            names.add(match.group(1))
    for match in re.finditer(r"^\s*Building wheels for collected packages: (.+)$", pip_log, re.M):
        names.update(n.strip() for n in match.group(1).split(","))
    return sorted(n for n in names if n and canonical(n) != "edgecnn")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------------ steps
@dataclass
class Result:
    name: str
    status: str
    seconds: float
    note: str = ""


@dataclass
class Steps:
    """Runs named steps, times them and keeps their results for the summary table."""

    results: list[Result] = field(default_factory=list)

    def status(self, name: str) -> str | None:
        return next((r.status for r in self.results if r.name == name), None)

    def add(self, name: str, status: str, seconds: float, note: str = "") -> None:
        self.results.append(Result(name, status, seconds, " ".join(note.split())))

    def run(self, name: str, fn: Callable[[], str], needs: tuple[str, ...] = ()) -> bool:
        for dep in needs:
            dep_status = self.status(dep)
            if dep_status == NEEDS_PIWHEELS:
                self.add(name, NEEDS_PIWHEELS, 0.0, f"not run: '{dep}' needs piwheels")
                return False
            if dep_status != PASSED:
                self.add(name, SKIPPED, 0.0, f"not run: '{dep}' {dep_status or 'did not run'}")
                return False
        print(f"\n>> {name}", flush=True)
        start = time.monotonic()
        try:
            note, status = fn(), PASSED
        except StepFailed as exc:
            note, status = str(exc), FAILED
        except NeedsPiwheels as exc:
            note, status = str(exc), NEEDS_PIWHEELS
        except subprocess.TimeoutExpired as exc:
            note, status = f"timed out after {exc.timeout:.0f} s", FAILED
        except Exception as exc:  # a bug in a check is that step's failure, not the end of the report
            note, status = f"{type(exc).__name__}: {exc}", FAILED
        seconds = time.monotonic() - start
        self.add(name, status, seconds, note)
        print(f"<< {name}: {status} in {seconds:.1f} s" + (f": {note}" if note else ""), flush=True)
        return status == PASSED

    def table(self) -> str:
        lines = ["| step | status | seconds | reason / note |", "|---|---|---:|---|"]
        for r in self.results:
            note = r.note.replace("|", "/")
            lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {note} |")
        return "\n".join(lines)

    def exit_status(self) -> int:
        statuses = {r.status for r in self.results}
        if FAILED in statuses or SKIPPED in statuses:
            return 1
        return 3 if NEEDS_PIWHEELS in statuses else 0


# ------------------------------------------------------------------------------------------ host
def run(
    argv: list[str], log: Path | None = None, timeout: float | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run a host command, output captured (and appended to ``log``)."""
    result = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", timeout=timeout, **kwargs
    )
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {shlex.join(argv)}\n{result.stdout}\n[exit {result.returncode}]\n")
    return result


def reachable(url: str, timeout: float = 20) -> str | None:
    """None when ``url`` answers, else why not (one line)."""
    cafile = "/etc/ssl/certs/ca-certificates.crt"
    context = ssl.create_default_context(cafile=cafile if os.path.isfile(cafile) else None)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout, context=context):
            return None
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 else f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return " ".join(str(reason).split()) or type(exc).__name__


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = str(path.resolve())
    points = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        if subprocess.run(["umount", point], capture_output=True).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True)


def remove_tree(path: Path) -> None:
    """rmtree, but never through a mount point (a bound /proc or /dev must not be emptied)."""
    if not path.exists():
        return
    unmount_all(path)
    if mounts_under(path):
        raise StepFailed(f"cannot remove {path}: still mounted there: {', '.join(mounts_under(path))}")
    shutil.rmtree(path)


def source_files(src: Path) -> list[Path]:
    """The checkout's files as git sees them (tracked and untracked, not ignored), relative paths."""
    listed = subprocess.run(
        ["git", "-C", str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
    )
    if listed.returncode == 0:
        return [Path(p) for p in listed.stdout.decode().split("\0") if p and (src / p).is_file()]
    skip = {".git", ".venv", "runs", "__pycache__", "build", "dist"}
    return [
        p.relative_to(src)
        for p in src.rglob("*")
        if p.is_file() and not any(part in skip or part.endswith(".egg-info") for part in p.relative_to(src).parts)
    ]


def copy_files(src: Path, files: list[Path], dest: Path, uid: int) -> None:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    for path in [dest, *dest.rglob("*")]:
        os.lchown(path, uid, uid)


def tree_key(folder: Path, extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ models
def prepare(out: Path) -> None:
    """On the host, with TensorFlow: the int8 models of the three tasks, two clips and three small
    datasets in the layouts a light install reads (no scikit-learn or scikit-image needed there), and
    the host's own eval results to compare against."""
    import cv2
    import numpy as np

    from edgecnn.archs import create, get_arch
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.core.metadata import ModelInfo
    from edgecnn.data.registry import load_split
    from edgecnn.data.shapes import CLASSES, shapes, shapes_seg
    from edgecnn.pipelines.evaluate import EvalOptions, evaluate
    from edgecnn.pipelines.quickstart import write_clip

    out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "edgecnn"]
    # classify: the quickstart's LeNet-5, trained on digits (so eval has a real accuracy to reproduce)
    subprocess.run([*cli, "quickstart", "--out", str(out / "quickstart"), "--epochs", "5"], check=True)
    shutil.copy(out / "quickstart" / "train" / "model_int8.tflite", out / "classify_int8.tflite")
    shutil.copy(out / "quickstart" / "clip.mp4", out / "digits.mp4")
    val = load_split("digits", "classify", 32, None, 0, 0.2).val  # images the model did not train on
    for i, (image, label) in enumerate(zip(val.x, val.y, strict=True)):
        folder = out / "digits" / val.labels[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), image[..., 0])

    # detect and segment: seeded random weights on shapes images, in YOLO and image/mask folders
    size = 96
    det, seg = shapes(size, count=50), shapes_seg(size, count=50)
    for sub in ("shapes_yolo/images", "shapes_yolo/labels", "shapes_masks/images", "shapes_masks/masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "shapes_yolo" / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (out / "shapes_masks" / "labels.txt").write_text("\n".join(["background", *CLASSES]) + "\n")
    for i, image in enumerate(det.x):
        bgr = np.ascontiguousarray(image[..., ::-1])
        cv2.imwrite(str(out / "shapes_yolo" / "images" / f"{i:03d}.png"), bgr)
        cv2.imwrite(str(out / "shapes_masks" / "images" / f"{i:03d}.png"), bgr)
        cv2.imwrite(str(out / "shapes_masks" / "masks" / f"{i:03d}.png"), seg.masks[i])
        rows = [
            f"{c} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}"
            for (y0, x0, y1, x1), c in zip(det.boxes[i], det.classes[i], strict=True)
        ]
        (out / "shapes_yolo" / "labels" / f"{i:03d}.txt").write_text("\n".join(rows) + "\n")
    write_clip(np.ascontiguousarray(det.x[:20, ..., ::-1]), out / "shapes.mp4", size=256, frames_per_image=3)
    for task, arch, labels in (
        ("detect", "ssdlite_mobilenet_v2_035", list(CLASSES)),
        ("segment", "unet_mobilenet_v2", ["background", *CLASSES]),
    ):
        keras.utils.set_random_seed(0)
        model = create(arch, len(labels), size, 3)
        info = ModelInfo(
            task=get_arch(arch).task,
            labels=labels,
            input_size=[size, size],
            channels=3,
            arch=arch,
            extra=dict(model.edgecnn_extra),
        )
        keras_path = save_keras(model, out / f"{task}.keras", info)
        calib = out / "shapes_yolo" / "images"
        convert = [*cli, "convert", str(keras_path), "--int8", "--calib", str(calib), "--no-eval"]
        subprocess.run([*convert, "-o", str(out / f"{task}_int8.tflite")], check=True)

    host = {}
    for task, data in (("classify", "digits"), ("detect", "shapes_yolo"), ("segment", "shapes_masks")):
        result = evaluate(out / f"{task}_int8.tflite", EvalOptions(data=str(out / data)))
        metric = {"classify": "top1", "detect": "map50", "segment": "miou"}[task]
        host[task] = {"metric": metric, "value": result[metric], "images": result["images"]}
    (out / "host_eval.json").write_text(json.dumps(host, indent=1))


# ------------------------------------------------------------------------------------------- the box
@dataclass
class Box:
    """The emulated Raspberry Pi OS: a root folder, its mounts, and commands run in it as user pi."""

    arch: Arch
    root: Path
    logs: Path

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": self.arch.qemu_cpu, "LANG": "C.UTF-8"}

    def as_root(self, *argv: str, timeout: float = STEP_TIMEOUT, log: str = "root") -> subprocess.CompletedProcess:
        return run(["chroot", str(self.root), *argv], self.logs / f"{log}.log", timeout, env=self.env())

    def sh(
        self, script: str, timeout: float = STEP_TIMEOUT, log: str = "pi", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """``script`` in bash as user pi in its home, with a login-like environment (nothing of the host's)."""
        pi_env = {
            "HOME": HOME,
            "USER": PI,
            "LOGNAME": PI,
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
            "QEMU_CPU": self.arch.qemu_cpu,
            "PIP_PROGRESS_BAR": "off",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        argv = [
            "chroot",
            f"--userspec={PI_UID}:{PI_UID}",
            str(self.root),
            "/usr/bin/env",
            "-i",
            *(f"{k}={v}" for k, v in pi_env.items()),
            "/bin/bash",
            "-c",
            f"cd {HOME} && {script}",
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=self.env(),
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        with (self.logs / f"{log}.log").open("a") as f:
            f.write(f"$ {script}\n{output}\n[exit {proc.returncode}]\n")
        return subprocess.CompletedProcess(argv, proc.returncode, output)

    def pi_cmd(self, script: str, show: bool = True, **kwargs) -> str:
        """Run ``script`` as pi; its output (shown indented), or StepFailed with its error line."""
        result = self.sh(script, **kwargs)
        if show:
            for line in result.stdout.rstrip().splitlines():
                print(f"   {line}")
        if result.returncode:
            raise StepFailed(first_error(result.stdout, result.returncode))
        return result.stdout

    def mount(self, cpuinfo: Path) -> None:
        unmount_all(self.root)  # left by a killed run
        for argv, target in (
            (["-t", "proc", "proc"], "proc"),
            (["--bind", str(cpuinfo)], "proc/cpuinfo"),
            (["-t", "sysfs", "-o", "ro", "sysfs"], "sys"),
            (["-t", "tmpfs", "-o", "mode=1777", "tmpfs"], "dev/shm"),
        ):
            point = self.root / target
            result = run(["mount", *argv, str(point)])
            if result.returncode:
                raise StepFailed(f"mount {target}: {first_error(result.stdout, result.returncode)}")


def pi4_cpuinfo(arch: str) -> str:
    cores = os.cpu_count() or 1
    return "\n".join(f"processor\t: {i}\n{PI4_CORE[arch]}" for i in range(cores)) + "\n" + PI4_BOARD


def root_marker(arch: Arch) -> str:
    return json.dumps({"version": ROOT_VERSION, "suite": SUITE, "arch": arch.debian, "packages": arch.packages})


def root_is_built(root: Path, arch: Arch) -> bool:
    marker = root / "etc" / "edgecnn-pi-root"
    return marker.is_file() and marker.read_text().splitlines()[0] == root_marker(arch)


# ------------------------------------------------------------------------------------------ preflight
@dataclass
class Options:
    arch: Arch
    name: str
    cache: Path
    src: Path
    host_python: Path
    mirror: str
    install_only: bool
    rebuild: bool
    frames: int


def preflight(opts: Options, logs: Path) -> tuple[float, str]:
    """Everything that makes it unable to run, checked before it prints anything: raises Refusal.
    Installs missing host tools on the way; returns (seconds, note) for the table's first row."""
    start = time.monotonic()
    if sys.platform != "linux":
        raise Refusal("needs Linux (binfmt_misc, chroot); run it on a Debian or Ubuntu machine or VM")
    if os.geteuid() != 0:
        raise Refusal(
            "needs root (debootstrap, mount and chroot); run: sudo "
            f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__)))} {' '.join(sys.argv[1:])}".rstrip()
        )
    root = opts.cache / f"{SUITE}-{opts.name}"
    need_debian = opts.rebuild or not root_is_built(root, opts.arch)
    missing = [p for p, have in zip(HOST_TOOLS, host_tools_present(opts.arch), strict=True) if not have]
    if missing or need_debian:
        why = reachable(f"{opts.mirror.rstrip('/')}/dists/{SUITE}/Release")
        if why:
            raise Refusal(
                f"Debian's packages are unreachable ({opts.mirror}: {why}); connect this machine to the "
                "network (or give a reachable mirror with --mirror URL)"
            )
    why = reachable(PYPI)
    if why:
        raise Refusal(f"PyPI is unreachable ({PYPI}: {why}); the light install downloads its wheels from pypi.org")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        result = run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
        if result.returncode or not (binfmt / "register").exists():
            raise Refusal(
                f"the kernel refuses binfmt_misc ({first_error(result.stdout, result.returncode)}), so it cannot "
                f"run {opts.arch.machine} programs through qemu; use a kernel with CONFIG_BINFMT_MISC and the "
                "right to mount it (a full VM, not a container) or a real Raspberry Pi"
            )
    if not opts.install_only and not models_dir(opts).joinpath(".done").is_file():
        check = run([str(opts.host_python), "-c", "import tensorflow, edgecnn"], timeout=300)
        if check.returncode:
            raise Refusal(
                f"the host venv {opts.host_python} cannot import TensorFlow and edgecnn to prepare the models "
                f"({first_error(check.stdout, check.returncode)}); run: pip install -e '.[train]' in it, or "
                "pass --host-python"
            )
    note = "present"
    if missing:
        if shutil.which("apt-get") is None:
            raise Refusal(f"{', '.join(missing)} missing and no apt-get to install them; install them")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        update = run(["apt-get", "update"], logs / "host-tools.log", 900, env=env)
        install = run(["apt-get", "install", "-y", *HOST_TOOLS], logs / "host-tools.log", 900, env=env)
        if install.returncode:
            raise Refusal(
                f"apt-get cannot install {' '.join(missing)} ({first_error(install.stdout or update.stdout)}); "
                f"install them yourself: apt-get install {' '.join(HOST_TOOLS)}"
            )
        note = f"installed {', '.join(missing)}"
    entry = binfmt / opts.arch.qemu
    if not binfmt_enabled(entry):
        enable = run(["update-binfmts", "--enable", opts.arch.qemu], logs / "host-tools.log", 60)
        if not binfmt_enabled(entry):
            raise Refusal(
                f"{opts.arch.qemu} is not registered with binfmt_misc (update-binfmts --enable {opts.arch.qemu}: "
                f"{first_error(enable.stdout, enable.returncode)}); if the kernel refuses the registration this "
                f"machine cannot emulate {opts.arch.machine}; else run: apt-get install --reinstall "
                "qemu-user-static binfmt-support"
            )
    flags = [line.split(":", 1)[1].strip() for line in entry.read_text().splitlines() if line.startswith("flags:")]
    if "F" not in "".join(flags):  # without F the kernel looks for the interpreter inside the chroot
        raise Refusal(
            f"binfmt_misc's {opts.arch.qemu} entry lacks the F flag, so qemu cannot start inside a chroot; "
            "run: apt-get install --reinstall qemu-user-static (Debian's registers it with F)"
        )
    return time.monotonic() - start, note


def host_tools_present(arch: Arch) -> list[bool]:
    return [
        shutil.which("debootstrap") is not None or Path("/usr/sbin/debootstrap").exists(),
        Path(f"/usr/bin/{arch.qemu}-static").exists(),
        shutil.which("update-binfmts") is not None or Path("/usr/sbin/update-binfmts").exists(),
    ]


def binfmt_enabled(entry: Path) -> bool:
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def models_dir(opts: Options) -> Path:
    key = tree_key(REPO / "edgecnn", f"prep {PREP_VERSION}")
    return opts.cache / f"models-{key}"


# ------------------------------------------------------------------------------------------ the run
def build_root(opts: Options, root: Path, logs: Path) -> str:
    if root_is_built(root, opts.arch) and not opts.rebuild:
        built = datetime.date.fromtimestamp((root / "etc" / "edgecnn-pi-root").stat().st_mtime)
        return f"reused {root} (built {built})"
    partial = root.with_name(root.name + ".partial")
    remove_tree(partial)
    result = run(
        [
            "debootstrap",
            f"--arch={opts.arch.debian}",
            "--variant=minbase",
            f"--include={','.join(opts.arch.packages)}",
            SUITE,
            str(partial),
            opts.mirror,
        ],
        logs / "debootstrap.log",
        3600,
        env={**os.environ, "QEMU_CPU": opts.arch.qemu_cpu},
    )
    if result.returncode:
        raise StepFailed(f"debootstrap: {first_error(result.stdout, result.returncode)} (log: {logs}/debootstrap.log)")
    unmount_all(partial)  # debootstrap can leave its /proc mounted
    box = Box(opts.arch, partial, logs)
    added = box.as_root("useradd", "--create-home", "--uid", str(PI_UID), "--shell", "/bin/bash", PI)
    if added.returncode:
        raise StepFailed(f"useradd pi: {first_error(added.stdout, added.returncode)}")
    (partial / "etc" / "edgecnn-pi-root").write_text(root_marker(opts.arch) + "\n")
    remove_tree(root)
    partial.rename(root)
    return f"built {root}: debootstrap --variant=minbase {SUITE} {opts.arch.debian} + {', '.join(opts.arch.packages)}"


def host_network_setup(box: Box) -> str:
    """The host's DNS and the CA certificates it trusts locally (a TLS-inspecting proxy's), as a Pi on
    the same network would have them; pip is told to use the system's CA bundle only in that case."""
    shutil.copy("/etc/resolv.conf", box.root / "etc" / "resolv.conf")
    local_cas = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    if not local_cas:
        return ""
    target = box.root / "usr" / "local" / "share" / "ca-certificates"
    changed = False
    for ca in local_cas:
        dest = target / ca.relative_to("/usr/local/share/ca-certificates")
        if not dest.is_file() or dest.read_bytes() != ca.read_bytes():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ca, dest)
            changed = True
    if changed:
        updated = box.as_root("update-ca-certificates")
        if updated.returncode:
            raise StepFailed(f"update-ca-certificates: {first_error(updated.stdout, updated.returncode)}")
    (box.root / "etc" / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    return f"; trusts the host's {len(local_cas)} local CA certificate(s)"


def fresh_home(box: Box) -> None:
    """Each run installs from scratch: no venv, checkout or wheels built by an earlier run (pip's download
    cache stays, where the network lets pip cache)."""
    home = box.root / HOME.lstrip("/")
    for path in (SRC, VENV, WORK, f"{HOME}/.cache/pip/wheels", f"{HOME}/rt-venv"):
        remove_tree(box.root / path.lstrip("/"))
    home.mkdir(parents=True, exist_ok=True)


IMPORTS = r"""
import importlib.metadata as md, json, platform, sys
from pathlib import Path
mods = {"numpy": "numpy", "cv2": "opencv-python-headless", "yaml": "pyyaml", "tqdm": "tqdm",
        "flatbuffers": "flatbuffers"}
mods.update({"ai_edge_litert.interpreter": "ai-edge-litert", "pycocotools.mask": "pycocotools"}
            if platform.machine() != "armv7l" else {"tflite_runtime.interpreter": "tflite-runtime"})
import importlib
for mod, dist in mods.items():
    importlib.import_module(mod)
    print(f"{dist} {md.version(dist)}")
print("python", platform.python_version(), platform.machine())
"""

WHEEL_TAGS = r"""
import importlib.metadata as md
for dist in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower()):
    text = dist.read_text("WHEEL") or ""
    tags = [l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("Tag:")]
    print(f"{dist.metadata['Name']} {dist.version} {' '.join(tags) or 'no WHEEL file'}")
"""

READ_BACK = r"""
import sys, cv2
cap = cv2.VideoCapture(sys.argv[1])
n = 0
while cap.read()[0]:
    n += 1
w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
print(f"read back {n} frames {w}x{h}")
sys.exit(0 if n == int(sys.argv[2]) else 1)
"""

RUNTIME_ONLY = r"""
import sys, numpy as np
from edgecnn.runtime.interpreter import find_backend, load_model
backend = find_backend()
print(f"backend {backend.name} {backend.version}, numpy {np.__version__}")
for path in sys.argv[1:]:
    model = load_model(path)
    model.set_input(np.zeros(model.input_shape, np.uint8))
    model.invoke()
    outs = [model.output(i) for i in range(len(model.outputs))]
    assert all(np.isfinite(o).all() for o in outs), path
    print(f"{path.rsplit('/', 1)[-1]}: {model.info.task if model.info else '?'}, "
          f"outputs {[tuple(o.shape) for o in outs]}")
"""


def check_run(opts: Options, steps: Steps, logs: Path) -> None:
    arch, name = opts.arch, opts.name
    root = opts.cache / f"{SUITE}-{name}"
    box = Box(arch, root, logs)
    cpuinfo = opts.cache / f"cpuinfo-pi4-{name}"
    cpuinfo.write_text(pi4_cpuinfo(name))
    models = models_dir(opts)
    armv7l = arch.machine == "armv7l"

    steps.run("root folder", lambda: build_root(opts, root, logs))

    def chroot_check() -> str:
        box.mount(cpuinfo)
        extra = host_network_setup(box)
        fresh_home(box)
        out = box.pi_cmd("uname -m; python3 --version; . /etc/os-release; echo $PRETTY_NAME", show=True)
        machine = out.split()[0] if out.split() else "?"
        if machine != arch.machine:
            raise StepFailed(f"uname -m says {machine}, expected {arch.machine}")
        return f"{' '.join(out.split()[:3])}, {out.splitlines()[-1]}, qemu -cpu {arch.qemu_cpu}{extra}"

    if not steps.run("chroot runs " + arch.machine, chroot_check, needs=("root folder",)):
        return
    if not opts.install_only:

        def prep() -> str:
            with locked(opts.cache / "models.lock", wait=True):  # shared by the arm64 and armhf runs
                if (models / ".done").is_file():
                    return f"reused {models}"
                for stale in opts.cache.glob("models-*"):  # written from an older checkout
                    remove_tree(stale)
                result = run(
                    [str(opts.host_python), str(Path(__file__).resolve()), "--prepare", str(models)],
                    logs / "models.log",
                    3600,
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                )
                if result.returncode:
                    raise StepFailed(f"{first_error(result.stdout, result.returncode)} (log: {logs}/models.log)")
                (models / ".done").write_text("")
                return f"wrote {models}"

        steps.run("models (host, TensorFlow)", prep)

    def copy() -> str:
        files = source_files(opts.src)
        copy_files(opts.src, files, root / SRC.lstrip("/"), PI_UID)
        note = f"{len(files)} files of {opts.src} -> {SRC}"
        if (models / ".done").is_file() and not opts.install_only:
            copied = [p.relative_to(models) for p in models.rglob("*") if p.is_file() and p.name != ".done"]
            copied = [p for p in copied if p.parts[0] != "quickstart" and p.suffix != ".keras"]
            copy_files(models, copied, root / WORK.lstrip("/"), PI_UID)
            note += f"; {len(copied)} model/clip/data files -> {WORK}"
        return note

    steps.run("copy checkout", copy, needs=("chroot runs " + arch.machine,))

    if armv7l:

        def piwheels() -> str:
            why = reachable(PIWHEELS)
            if why:
                raise NeedsPiwheels(f"www.piwheels.org is unreachable from this machine ({why})")
            return "www.piwheels.org answers"

        steps.run("piwheels.org reachable", piwheels)

        def pypi_wheels() -> tuple[list[str], list[str]]:
            have, lack = [], []
            for req in ARMV7L_REQUIREMENTS:
                result = box.sh(
                    "python3 -m pip download --isolated --no-cache-dir --only-binary=:all: --no-deps "
                    f"--index-url https://pypi.org/simple -d /tmp/wheel-probe {shlex.quote(req)}",
                    log="pypi-wheels",
                )
                found = re.findall(r"(?:Saved|File was already downloaded) \S*/([^/\s]+\.whl)", result.stdout)
                (have if result.returncode == 0 else lack).append(found[0] if found else req)
            return have, lack

        probe: dict[str, list[str]] = {}

        def pypi_step() -> str:
            probe["have"], probe["lack"] = pypi_wheels()
            if not probe["have"]:
                raise StepFailed("no armv7l wheel of any requirement found on PyPI")
            return "on PyPI for cp311 armv7l: " + ", ".join(probe["have"])

        def piwheels_step() -> str:
            if probe.get("lack"):
                lack = ", ".join(probe["lack"])
                raise NeedsPiwheels(f"no cp311 armv7l wheel on PyPI for {lack}: piwheels builds them")
            return "every requirement has a PyPI wheel"

        steps.run("PyPI wheels (armv7l)", pypi_step, needs=("chroot runs " + arch.machine,))
        steps.run("wheels PyPI lacks (armv7l)", piwheels_step, needs=("PyPI wheels (armv7l)",))

    install_log: dict[str, str] = {}

    def install() -> str:
        # armv7l: wheels only, so a package with no wheel fails at once instead of a compile under qemu
        env = {"PIP_ONLY_BINARY": ":all:"} if armv7l else {}
        result = box.sh(f"cd {SRC} && bash demo/install_pi.sh", INSTALL_TIMEOUT, log="install", env=env)
        install_log["text"] = result.stdout
        tail = [line for line in result.stdout.splitlines() if line.strip()][-3:]
        for line in tail:
            print(f"   {line}")
        if result.returncode:
            reason = first_error(result.stdout, result.returncode)
            if armv7l and steps.status("piwheels.org reachable") == NEEDS_PIWHEELS:
                raise NeedsPiwheels(f"{reason} (piwheels.org unreachable)")
            raise StepFailed(reason)
        installed = re.findall(r"^Successfully installed (.+)$", result.stdout, re.M)
        return installed[-1] if installed else "installed"

    steps.run("install (demo/install_pi.sh)", install, needs=("copy checkout",))

    def wheels_only() -> str:
        built = built_from_source(install_log.get("text", ""))
        tags = box.pi_cmd(f"{VENV}/bin/python -c {shlex.quote(WHEEL_TAGS)}", show=True, log="wheels")
        if built:
            raise StepFailed(f"pip built from source: {', '.join(built)} (no wheel for {arch.machine})")
        binary = [line.split()[0] for line in tags.splitlines() if arch.machine in line]
        return f"nothing built but edgecnn; {len(binary)} {arch.machine} wheels: {', '.join(binary)}"

    steps.run("wheels only (no source builds)", wheels_only, needs=("install (demo/install_pi.sh)",))

    def no_tensorflow() -> str:
        listed = box.pi_cmd(f"{VENV}/bin/python -m pip list --format=json", show=False, log="wheels")
        names = {canonical(d["name"]) for d in json.loads(listed.splitlines()[-1])}
        heavy = sorted(names & {canonical(h) for h in HEAVY})
        if heavy:
            raise StepFailed(f"the light install pulled {', '.join(heavy)}")
        return f"{len(names)} packages, none of {', '.join(HEAVY[:3])}, ..."

    steps.run("no TensorFlow", no_tensorflow, needs=("install (demo/install_pi.sh)",))

    def imports() -> str:
        out = box.pi_cmd(f"{VENV}/bin/python -c {shlex.quote(IMPORTS)}", log="imports")
        return "; ".join(out.strip().splitlines())

    steps.run("imports", imports, needs=("install (demo/install_pi.sh)",))

    if opts.install_only:
        return
    if armv7l:

        def runtime_check() -> str:
            # Debian's numpy (python3-numpy) in place of piwheels': tflite-runtime from PyPI, edgecnn's runtime
            box.pi_cmd(
                "python3 -m venv --system-site-packages rt-venv && rt-venv/bin/pip install --only-binary=:all: "
                f"tflite-runtime flatbuffers && rt-venv/bin/pip install --no-deps {SRC}",
                show=False,
                log="runtime",
                timeout=INSTALL_TIMEOUT,
            )
            models_in = " ".join(f"{WORK}/{t}_int8.tflite" for t in ("classify", "detect", "segment"))
            out = box.pi_cmd(f"rt-venv/bin/python -c {shlex.quote(RUNTIME_ONLY)} {models_in}", log="runtime")
            return out.strip().splitlines()[0] + "; ran the 3 int8 models (Debian's numpy, not piwheels')"

        steps.run("tflite-runtime + Debian numpy", runtime_check, needs=("copy checkout", "models (host, TensorFlow)"))

    installed = ("install (demo/install_pi.sh)", "models (host, TensorFlow)")

    def doctor() -> str:
        out = box.pi_cmd("edgecnn doctor", log="doctor")
        return out.strip().splitlines()[-1]

    steps.run("edgecnn doctor", doctor, needs=installed)
    host_eval = json.loads((models / "host_eval.json").read_text()) if (models / "host_eval.json").is_file() else {}
    for task in ("classify", "detect", "segment"):
        model = f"{WORK}/{task}_int8.tflite"

        def bench(model: str = model) -> str:
            out = box.pi_cmd(f"edgecnn benchmark {model} --warmup 2 --runs 10", log="benchmark")
            return out.strip().splitlines()[0]

        steps.run(f"benchmark {task}", bench, needs=installed)

    for task, data in (("classify", "digits"), ("detect", "shapes_yolo"), ("segment", "shapes_masks")):

        def evaluate(task: str = task, data: str = data) -> str:
            out = box.pi_cmd(f"edgecnn eval {WORK}/{task}_int8.tflite --data {WORK}/{data} --json", log="eval")
            result = json.loads(out.strip().splitlines()[-1])
            host = host_eval.get(task, {})
            metric, value = host.get("metric", "?"), result.get(host.get("metric", ""), float("nan"))
            note = f"{metric} {value:.4f} on {result.get('images')} images ({result.get('runtime')}); "
            note += f"host {host.get('value', float('nan')):.4f}"
            if not abs(value - host.get("value", float("nan"))) <= 0.02:
                raise StepFailed("differs from the host: " + note)
            return note

        steps.run(f"eval {task}", evaluate, needs=installed)

    for task, clip in (("classify", "digits.mp4"), ("detect", "shapes.mp4"), ("segment", "shapes.mp4")):

        def demo(task: str = task, clip: str = clip) -> str:
            out_mp4 = f"{WORK}/demo_{task}.mp4"
            box.pi_cmd(
                f"edgecnn demo --model {WORK}/{task}_int8.tflite --source {WORK}/{clip} --save {out_mp4} "
                f"--no-display --max-frames {opts.frames}",
                log="demo",
            )
            back = box.pi_cmd(f"python -c {shlex.quote(READ_BACK)} {out_mp4} {opts.frames}", log="demo")
            return f"{opts.frames} frames of {clip} -> {Path(out_mp4).name}, {back.strip()}"

        steps.run(f"demo {task} (headless)", demo, needs=installed)


@contextlib.contextmanager
def locked(path: Path, wait: bool = False) -> Iterator[None]:
    with path.open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Refusal(f"another pi_emulated run holds {path}; wait for it to finish") from None
        yield


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", choices=sorted(ARCHES), default="arm64", help="arm64: 64-bit Pi OS; armhf: 32-bit")
    p.add_argument(
        "--cache",
        default=os.environ.get("EDGECNN_PI_CACHE", DEFAULT_CACHE),
        help=f"root folders, models and logs (env EDGECNN_PI_CACHE; default {DEFAULT_CACHE})",
    )
    p.add_argument("--src", default=str(REPO), help="the edgecnn checkout to install (default: this one)")
    p.add_argument(
        "--host-python",
        default=os.environ.get("EDGECNN_HOST_PYTHON", str(REPO / ".venv" / "bin" / "python")),
        help="a Python with TensorFlow and edgecnn, to prepare the models (default: .venv/bin/python)",
    )
    p.add_argument("--mirror", default=DEFAULT_MIRROR, help=f"Debian mirror for debootstrap (default {DEFAULT_MIRROR})")
    p.add_argument("--install-only", action="store_true", help="stop after the install checks")
    p.add_argument("--rebuild", action="store_true", help="build the root folder again")
    p.add_argument("--frames", type=int, default=FRAMES, help=f"demo --max-frames (default {FRAMES})")
    p.add_argument("--prepare", metavar="DIR", help=argparse.SUPPRESS)  # internal: run by the host venv
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        prepare(Path(args.prepare))
        return 0
    opts = Options(
        arch=ARCHES[args.arch],
        name=args.arch,
        cache=Path(args.cache).resolve(),
        src=Path(args.src).resolve(),
        host_python=Path(args.host_python),
        mirror=args.mirror,
        install_only=args.install_only,
        rebuild=args.rebuild,
        frames=args.frames,
    )
    started = time.monotonic()
    steps = Steps()
    box: Box | None = None
    try:
        if os.geteuid() == 0:
            opts.cache.mkdir(parents=True, exist_ok=True)
        logs = opts.cache / "logs" / opts.name
        with contextlib.ExitStack() as stack:
            if os.geteuid() == 0:
                stack.enter_context(locked(opts.cache / f"{SUITE}-{opts.name}.lock"))
                remove_tree(logs)
                logs.mkdir(parents=True)
            seconds, note = preflight(opts, logs)
            print(f"pi_emulated: {SUITE} {opts.arch.debian} ({opts.arch.machine}) in {opts.cache}; logs in {logs}")
            steps.add("host tools", PASSED, seconds, f"{note}: {', '.join(HOST_TOOLS)}; binfmt {opts.arch.qemu}")
            box = Box(opts.arch, opts.cache / f"{SUITE}-{opts.name}", logs)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            try:
                check_run(opts, steps, logs)
            finally:
                unmount_all(box.root)
    except Refusal as exc:
        print(refuse_line(str(exc)), file=sys.stderr)
        return 2
    status = steps.exit_status()
    verdict = {0: "every step passed", 1: "FAILED", 3: "no step failed; some need piwheels.org"}[status]
    print(f"\npi_emulated {opts.name}: {verdict} in {time.monotonic() - started:.0f} s ({datetime.date.today()})")
    print(steps.table())
    return status


if __name__ == "__main__":
    sys.exit(main())
