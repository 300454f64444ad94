"""The README and docs/ stay true: every ```bash and ```python block runs, every cited path exists.

Each page's runnable blocks run in order, as one bash script, in a folder of its own that starts as a
copy of one shared workspace: a trained LeNet-5 run on digits (``runs/digits``, with its float32 and
int8 ``.tflite``), ``model_int8.tflite``, ``photo.jpg``, ``digit.png``, ``clip.mp4`` and the recipes of
``training/`` and ``convert/`` (the pages' commands run from the repository root), plus the
detector and segmenter runs (``runs/shapes``, ``runs/seg``) that the detection page's own examples train
(that page runs first, in the workspace itself). So the examples chain within a page and reuse one
trained run across pages, and they stay cheap (``--epochs 1`` where a page is about a flag, not about
accuracy).

A block that cannot run here (an install from the network, a camera, a Coral USB accelerator, the CI
command itself) carries ``<!-- not run: REASON -->`` on the line right above its fence; the count of
such blocks is kept small (``MAX_NOT_RUN``). A ``bash``/``python`` block with neither fails, and so does a
fence in a shell or Python dialect spelled otherwise (``sh``, ``console``, ``py``...), which would dodge
the check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

RUN_LANGS = ("bash", "python")
# Languages a runnable example could hide behind; a block in one of them must be written as bash/python.
DODGE_LANGS = {"sh", "shell", "console", "zsh", "py", "python3", "pycon", "ipython"}
MAX_NOT_RUN = 12
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
FIRST_PAGES = ("docs/tasks.md",)  # run in the shared workspace itself: later pages use what they train
PAGE_TIMEOUT_S = 900


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: where it starts, its language, its text, and why it is not run."""

    page: str
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages() -> list[Path]:
    """README.md and every page of the site, in a fixed order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def read_blocks(text: str, page: str) -> list[Block]:
    """The fenced blocks of a Markdown text, each with the ``not run`` reason written right above it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match.group("lang")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{page}:{start + 1}: fence never closed")
        above = NOT_RUN.match(lines[start - 1].strip()) if start > 0 else None
        code = "\n".join(lines[start + 1 : end]) + "\n"
        blocks.append(Block(page, start + 1, lang, code, above.group("reason") if above else None))
        i = end + 1
    return blocks


def block_problems(blocks: list[Block]) -> list[str]:
    """Why blocks break the rule: unlabelled fences, dodging dialects, reasons on blocks that never run."""
    problems = []
    for block in blocks:
        if not block.lang:
            problems.append(f"{block.where}: a fence without a language: write bash, python or text")
        elif block.lang in DODGE_LANGS:
            problems.append(f"{block.where}: ```{block.lang} is not checked: write ```bash or ```python")
        elif block.not_run and block.lang not in RUN_LANGS:
            problems.append(f"{block.where}: 'not run' above a ```{block.lang} block, which never runs")
    return problems


def all_blocks() -> list[Block]:
    return [block for page in doc_pages() for block in read_blocks(page.read_text(), rel(page))]


def page_script(blocks: list[Block]) -> str:
    """The runnable blocks of one page as one bash script, in order, each announced on stderr."""
    parts = ["set -euo pipefail"]
    for block in blocks:
        if block.lang not in RUN_LANGS or block.not_run:
            continue
        parts.append(f"echo '### {block.where}' >&2")
        if block.lang == "bash":
            parts.append(block.code)
        else:
            parts.append(f"python - <<'EDGECNN_DOCS_PY'\n{block.code}EDGECNN_DOCS_PY")
    return "\n".join(parts) + "\n"


def run_page(page: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a page's examples in ``cwd`` with this interpreter's ``edgecnn`` and ``python`` first on PATH."""
    blocks = read_blocks((ROOT / page).read_text(), page)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return subprocess.run(
        ["bash", "-c", page_script(blocks)], cwd=cwd, env=env, capture_output=True, text=True, timeout=PAGE_TIMEOUT_S
    )


def failure(result: subprocess.CompletedProcess) -> str:
    """The last block announced and the tail of both streams: enough to see which example broke."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"


# ------------------------------------------------------------------------------------------ the rules
def test_every_runnable_block_runs_or_says_why_not() -> None:
    blocks = all_blocks()
    assert block_problems(blocks) == []
    not_run = [f"{b.where}: {b.not_run}" for b in blocks if b.lang in RUN_LANGS and b.not_run]
    print("\n".join(not_run))
    assert len(not_run) <= MAX_NOT_RUN, f"{len(not_run)} blocks are not run (at most {MAX_NOT_RUN}):\n" + "\n".join(
        not_run
    )
    assert sum(b.lang in RUN_LANGS and not b.not_run for b in blocks) >= 20


def test_the_block_rules_catch_what_they_should() -> None:
    page = "\n".join(
        [
            "```",
            "edgecnn archs",
            "```",
            "```sh",
            "edgecnn archs",
            "```",
            "<!-- not run: not code -->",
            "```text",
            "output",
            "```",
            "<!-- not run: needs a camera -->",
            "```bash",
            "edgecnn demo --source 0",
            "```",
            "```python",
            "print(1)",
            "```",
        ]
    )
    blocks = read_blocks(page, "planted.md")
    assert [(b.line, b.lang, b.not_run) for b in blocks] == [
        (1, "", None),
        (4, "sh", None),
        (8, "text", "not code"),
        (12, "bash", "needs a camera"),
        (15, "python", None),
    ]
    assert block_problems(blocks) == [
        "planted.md:1: a fence without a language: write bash, python or text",
        "planted.md:4: ```sh is not checked: write ```bash or ```python",
        "planted.md:8: 'not run' above a ```text block, which never runs",
    ]
    script = page_script(blocks)
    assert "edgecnn demo" not in script and "python - <<'EDGECNN_DOCS_PY'\nprint(1)\nEDGECNN_DOCS_PY" in script
    with pytest.raises(AssertionError, match="planted.md:1: fence never closed"):
        read_blocks("```bash\nls\n", "planted.md")


def test_ci_runs_the_readme_test_command() -> None:
    readme = [b for b in read_blocks((ROOT / "README.md").read_text(), "README.md") if b.lang == "bash"]
    test_command = readme[1].code.strip()
    assert "pytest" in test_command and '".[train,test,onnx,docs]"' in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().replace("pip install -q ", "pip install ")


# ------------------------------------------------------------------------------------------ cited paths
TOP_LEVEL = ("edgecnn", "training", "convert", "benchmarks", "demo", "tests", "docs", "scripts", ".ci")
PATH_TOKEN = re.compile(rf"^(?:{'|'.join(re.escape(t) for t in TOP_LEVEL)})/[\w./*-]*$")
ROOT_FILES = {"README.md", "pyproject.toml", "mkdocs.yml"}
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
SNIPPET = re.compile(r'^--8<--\s+"([^"]+)"', re.MULTILINE)


def prose(text: str) -> str:
    """The page without its fenced blocks (those run, or are layouts and outputs, not citations)."""
    return re.sub(r"^```[\w+-]*\s*$.*?^```\s*$", "", text, flags=re.MULTILINE | re.DOTALL)


def cited_paths(text: str, page: Path) -> list[tuple[str, Path]]:
    """Repository paths a page cites: in inline code, as relative links, and as snippet includes."""
    body = prose(text)
    cited = []
    for span in INLINE_CODE.findall(body):
        for token in span.split():
            token = token.strip(",;:()'\"")
            if PATH_TOKEN.match(token) or token in ROOT_FILES:
                cited.append((token, ROOT / token))
    for target in LINK.findall(body):
        target = target.split("#")[0]
        if target and not re.match(r"^[a-z]+:", target):
            cited.append((target, (page.parent / target).resolve()))
    cited += [(path, ROOT / path) for path in SNIPPET.findall(text)]
    return cited


def missing(path: Path) -> bool:
    return not any(path.parent.glob(path.name)) if "*" in path.name else not path.exists()


def test_every_cited_path_exists() -> None:
    cited = [(rel(page), token, path) for page in doc_pages() for token, path in cited_paths(page.read_text(), page)]
    absent = [f"{page}: {token}" for page, token, path in cited if missing(path)]
    assert absent == []
    assert len(cited) >= 80  # the check looks at what the pages really cite


def test_the_path_check_sees_inline_code_links_and_snippets(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    text = (
        "Run `python benchmarks/nope.py --x` and `edgecnn eval runs/a.tflite`; see [x](other.md#part),"
        ' [y](https://example.org/z.md).\n--8<-- "convert/results/formats.md"\n```bash\ncat training/nope.yaml\n```\n'
    )
    tokens = [token for token, _ in cited_paths(text, page)]
    assert tokens == ["benchmarks/nope.py", "other.md", "convert/results/formats.md"]
    assert missing(ROOT / "benchmarks/nope.py") and not missing(ROOT / "training/*.yaml")


# ------------------------------------------------------------------------------------------ the examples
@pytest.fixture(scope="session")
def docs_workspace(tmp_path_factory: pytest.TempPathFactory, digits_run: Path, digits_clip: Path) -> Path:
    """The files the examples start from, then the first pages' own outputs (their results in ``.results``)."""
    import cv2
    from skimage import data as skdata

    from edgecnn.data import load_split

    work = tmp_path_factory.mktemp("docs") / "work"
    shutil.copytree(digits_run, work / "runs" / "digits")
    shutil.copy(digits_run / "model_int8.tflite", work / "model_int8.tflite")
    shutil.copy(digits_clip, work / "clip.mp4")
    for recipes in ("training", "convert"):  # the examples run from the repository root, where these are
        (work / recipes).mkdir()
        for recipe in (ROOT / recipes).glob("*.yaml"):
            shutil.copy(recipe, work / recipes / recipe.name)
    cv2.imwrite(str(work / "photo.jpg"), cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR))
    digit = load_split("digits", "classify", 32, None, 0, 0.2).val.x[0]
    cv2.imwrite(str(work / "digit.png"), digit)
    FIRST_RESULTS.update({page: run_page(page, work) for page in FIRST_PAGES})
    return work


FIRST_RESULTS: dict[str, subprocess.CompletedProcess] = {}
# Pages with at least one block to run (a page of prose and included tables has nothing to run).
RUN_PAGES = [b.page for b in all_blocks() if b.lang in RUN_LANGS and not b.not_run]
RUN_PAGES = list(dict.fromkeys(RUN_PAGES))


@pytest.mark.tf
@pytest.mark.parametrize("page", RUN_PAGES)
def test_page_examples_run(page: str, docs_workspace: Path, tmp_path: Path) -> None:
    if page in FIRST_RESULTS:
        result = FIRST_RESULTS[page]
    else:
        work = tmp_path / "work"
        shutil.copytree(docs_workspace, work)
        result = run_page(page, work)
    assert result.returncode == 0, failure(result)
