"""The README's examples run as written: every ```python block, and every ``decodex`` command of
every ```bash block, in an empty folder, in order (a block's later commands use the files its
earlier ones wrote). Commands that need hardware this machine lacks or run for minutes are
parsed (option names and values checked) but not run; each says why and where it is tested."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from decodex.app.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)

# command prefix -> why it is only parsed here
PARSED_ONLY = {
    "validate gpu": "needs a CUDA GPU (tests/validation/test_kernel_validation.py runs it without one)",
    "reproduce all": "3-4 minutes; tests/validation/test_reproduce.py checks every target",
    "study serving": "about 5 minutes; tests/explore/test_serving_study.py runs it on a small case",
    "validate cpu": "times every Numba CPU kernel case (~100 s); tests/validation/test_kernel_validation.py runs a few",
    "validate published": "runs the 131-row TensorRT-LLM table (~12 min); tests/validation/test_published_*.py run "
                          "each group, the serving one on a sample",
}


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of ``language``, in order."""
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


def commands(block: str) -> list[list[str]]:
    """The ``decodex`` commands of a bash block as argument lists (continuations joined, comments
    dropped, ``a && b`` split); other commands (make, pip) are not Decodex's to run."""
    text = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, "&&"]:
            if word != "&&":
                command.append(word)
                continue
            if command and command[0] == "decodex":
                out.append(command[1:])
            command = []
    return out


def _parsed_only(argv: list[str]) -> str | None:
    joined = " ".join(argv)
    return next((why for prefix, why in PARSED_ONLY.items() if joined.startswith(prefix)), None)


BASH = [block for block in blocks("bash") if commands(block)]


def test_the_readme_has_examples() -> None:
    assert blocks("python") and len(BASH) >= 3
    first = README.read_text(encoding="utf-8").split("```bash\n", 1)[1].splitlines()[:2]
    assert first[0].startswith("make app") and first[1].startswith("make test")


@pytest.mark.parametrize("index", range(len(BASH)), ids=[f"bash-block-{i}" for i in range(len(BASH))])
def test_readme_cli_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in commands(BASH[index]):
        if _parsed_only(argv):
            build_parser().parse_args(argv)
            continue
        status = main(argv)
        out = capsys.readouterr()
        assert status == 0, f"decodex {' '.join(argv)} -> {status}: {out.err[-500:]}"


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "readme"})
