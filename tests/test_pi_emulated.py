"""tests/tools/pi_emulated.py and demo/install_pi.sh: edgecnn's light install on an emulated Raspberry Pi OS.

The ``pi`` tests build (once; cached) and enter an arm64 Debian bookworm root folder through qemu: they
need root, binfmt_misc and network to Debian and PyPI, and take minutes. Run them with
``pytest -m pi tests/test_pi_emulated.py``. The other tests run anywhere in seconds.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "tools" / "pi_emulated.py"
INSTALL = ROOT / "demo" / "install_pi.sh"


@pytest.fixture(scope="module")
def pi_emulated():
    spec = importlib.util.spec_from_file_location("pi_emulated", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pi_emulated"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["pi_emulated"]


def rows(output: str) -> dict[str, tuple[str, str]]:
    """The summary table: step -> (status, reason / note)."""
    table = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] not in ("step", "---"):
            table[cells[0]] = (cells[1], cells[3])
    return table


# ------------------------------------------------------------------------------------------- fast
@pytest.mark.skipif(sys.platform != "linux", reason="elsewhere it refuses for want of Linux first")
def test_refuses_a_normal_user_in_one_line():
    argv = [sys.executable, str(SCRIPT), "--arch", "arm64"]
    if os.geteuid() == 0:  # drop to nobody, as a user without sudo would run it
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to drop root")
        # nobody may not be able to read the checkout (a clone in `mktemp -d` is 0700) nor its venv: the script
        # (standard library only) is copied to a folder anyone can read and run by the base interpreter.
        public = Path(tempfile.mkdtemp(prefix="edgecnn-pi-"))
        public.chmod(0o755)
        script = Path(shutil.copy(SCRIPT, public / SCRIPT.name))
        script.chmod(0o644)
        python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        argv = [*drop, str(python), str(script), "--arch", "arm64"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        if os.geteuid() == 0:
            shutil.rmtree(public, ignore_errors=True)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pi_emulated: cannot run: needs root") and "run: sudo " in lines[0]


def test_pip_source_builds_are_found_and_the_checkout_is_not_one(pi_emulated):
    log = """Processing ./edgecnn
Collecting docopt
  Downloading docopt-0.6.2.tar.gz (25 kB)
Building wheels for collected packages: edgecnn, docopt
  Building wheel for edgecnn (pyproject.toml): started
  Building wheel for edgecnn (pyproject.toml): finished with status 'done'
  Building wheel for docopt (setup.py): started
Successfully built edgecnn docopt
"""
    assert pi_emulated.built_from_source(log) == ["docopt"]
    wheels_only = "Building wheels for collected packages: edgecnn\n  Building wheel for edgecnn (pyproject.toml)\n"
    assert pi_emulated.built_from_source(wheels_only) == []


def test_the_reason_is_the_line_that_says_what_went_wrong(pi_emulated):
    first_error = pi_emulated.first_error
    qemu = "qemu: uncaught target signal 11 (Segmentation fault) - core dumped\nbash: line 1: Segmentation fault"
    assert first_error(qemu, 139).startswith("qemu: uncaught target signal 11")
    pip = "WARNING: Retrying\nERROR: Could not find a version that satisfies the requirement numpy<2\nERROR: No"
    assert first_error(pip, 1) == "ERROR: Could not find a version that satisfies the requirement numpy<2"
    cli = "edgecnn eval: error: dataset not found: 'x'; use a built-in name"
    assert first_error(cli, 1) == cli
    assert first_error("Traceback (most recent call last):\n  File x\nKeyError: 'top1'", 1) == "KeyError: 'top1'"
    assert first_error("", 137) == "killed by signal 9 (SIGKILL)"


def test_the_table_names_each_step_and_the_exit_status_follows_the_worst(pi_emulated):
    steps = pi_emulated.Steps()
    assert steps.run("fine", lambda: "note")

    def broken():
        raise pi_emulated.StepFailed("ERROR: no wheel | here")

    def far():
        raise pi_emulated.NeedsPiwheels("www.piwheels.org is unreachable")

    assert not steps.run("broken", broken)
    assert not steps.run("after", lambda: "x", needs=("broken",))
    assert steps.exit_status() == 1
    table = rows(steps.table())
    assert table["fine"] == ("passed", "note")
    assert table["broken"] == ("failed", "ERROR: no wheel / here")
    assert table["after"] == ("skipped", "not run: 'broken' failed")

    only_far = pi_emulated.Steps()
    only_far.run("piwheels", far)
    only_far.run("install", lambda: "x", needs=("piwheels",))
    assert only_far.exit_status() == 3
    assert rows(only_far.table())["install"] == ("needs piwheels", "not run: 'piwheels' needs piwheels")


def test_the_pi4_cpuinfo_has_one_arm_core_per_host_cpu(pi_emulated):
    for arch, architecture in (("arm64", "8"), ("armhf", "7")):
        text = pi_emulated.pi4_cpuinfo(arch)
        assert text.count("processor\t:") == (os.cpu_count() or 1)
        assert "CPU part\t: 0xd08" in text and f"CPU architecture: {architecture}" in text
        assert "Raspberry Pi 4" in text


def fake_board(tmp_path: Path, machine: str, venv_ok: bool = True) -> tuple[dict, Path]:
    """A PATH where ``uname -m`` says ``machine`` and ``python3 -m venv`` makes a venv whose pip logs its calls."""
    stubs, log = tmp_path / "bin", tmp_path / "pip.log"
    stubs.mkdir()
    (stubs / "uname").write_text(f"#!/bin/sh\necho {machine}\n")
    venv_body = (
        'mkdir -p "$3/bin"\n'
        f'printf \'#!/bin/sh\\necho "$*" >> {log}\\n\' > "$3/bin/pip"\n'
        'printf \'#!/bin/sh\\necho "edgecnn 0.1.0"\\n\' > "$3/bin/edgecnn"\n'
        'chmod +x "$3/bin/pip" "$3/bin/edgecnn"\n'
        if venv_ok
        else "echo 'The virtual environment was not created successfully because ensurepip is not available' >&2\n"
        "exit 1\n"
    )
    (stubs / "python3").write_text("#!/bin/sh\n" + venv_body)
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    return env, log


def test_install_pi_sh_on_32_bit_uses_piwheels_numpy_1_and_tflite_runtime(tmp_path):
    env, log = fake_board(tmp_path, "armv7l")
    result = subprocess.run(["bash", str(INSTALL), "/src/edgecnn"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    extra = "install --prefer-binary --extra-index-url https://www.piwheels.org/simple"
    assert log.read_text().splitlines() == [f"{extra} --upgrade pip", f"{extra} numpy<2 tflite-runtime /src/edgecnn"]
    assert "edgecnn 0.1.0" in result.stdout


def test_install_pi_sh_on_64_bit_takes_everything_from_pypi(tmp_path):
    env, log = fake_board(tmp_path, "aarch64")
    result = subprocess.run(["bash", str(INSTALL), "/src/edgecnn"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        "install --prefer-binary --upgrade pip",
        "install --prefer-binary /src/edgecnn",
    ]


def test_install_pi_sh_without_python3_venv_says_what_to_install(tmp_path):
    env, _ = fake_board(tmp_path, "aarch64", venv_ok=False)
    result = subprocess.run(["bash", str(INSTALL), "/src/edgecnn"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "install_pi.sh: python3 cannot create a venv; run: sudo apt install python3-venv python3-pip"
    )


# --------------------------------------------------------------------------------------- emulated
def run_script(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=5400)
    if result.returncode == 2:
        pytest.skip(result.stderr.strip())
    print(result.stdout[-6000:])
    return result


@pytest.mark.pi
def test_arm64_light_install_runs_every_command():
    result = run_script("--arch", "arm64")
    table = rows(result.stdout)
    failed = {step: why for step, (status, why) in table.items() if status != "passed"}
    assert result.returncode == 0 and not failed, f"failed steps: {failed}\n{result.stderr[-2000:]}"
    for step in ("install (demo/install_pi.sh)", "wheels only (no source builds)", "no TensorFlow", "edgecnn doctor"):
        assert step in table
    for task in ("classify", "detect", "segment"):
        assert {f"benchmark {task}", f"eval {task}", f"demo {task} (headless)"} <= set(table)


@pytest.mark.pi
def test_a_dependency_without_an_aarch64_wheel_fails_a_named_step(tmp_path):
    """docopt is published as a source package only: pip builds it, and the wheels-only step says so."""
    src = tmp_path / "edgecnn"
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for rel in files:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    pyproject = (src / "pyproject.toml").read_text()
    with_docopt = re.sub(r"dependencies = \[\n", 'dependencies = [\n    "docopt",\n', pyproject, count=1)
    assert with_docopt != pyproject
    (src / "pyproject.toml").write_text(with_docopt)
    result = run_script("--arch", "arm64", "--src", str(src), "--install-only")
    table = rows(result.stdout)
    assert result.returncode == 1
    assert table["install (demo/install_pi.sh)"][0] == "passed"
    status, why = table["wheels only (no source builds)"]
    assert status == "failed" and "docopt" in why
