"""The README's quick start and every code block of its API section run as written.

Each section's Python blocks run in order, in one fresh interpreter (the API blocks share one
store, as a reader following along would); the quick start's shell block runs line by line.
The README's lines stay within 100 characters and it points at nothing outside the
repository."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = open(os.path.join(ROOT, "README.md")).read()
BIN = os.path.dirname(sys.executable)


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"the README has no section {title!r}"
    return match.group(1)


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _run_python(code: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


def test_the_quick_start_runs_as_written():
    quick = _section("Quick start")
    (shell,) = _blocks(quick, "bash")
    for line in [x for x in shell.splitlines() if x.strip()]:
        out = subprocess.run(line, shell=True, cwd=ROOT, capture_output=True, text=True,
                             timeout=600, env={**os.environ,
                                               "PATH": BIN + os.pathsep + os.environ["PATH"]})
        assert out.returncode == 0, (line, out.stdout[-2000:], out.stderr[-2000:])
        if line.strip() == "dynamo-ray demo":
            _assert_the_demo_told_both_stories_quietly(out)
    (program,) = _blocks(quick, "python")
    out = _run_python(program)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "['book']" in out.stdout


def _assert_the_demo_told_both_stories_quietly(out: subprocess.CompletedProcess) -> None:
    assert "The next read returns 2 siblings: [['book'], ['lamp']]" in out.stdout
    assert "the cart reads as one value: ['book', 'lamp']" in out.stdout
    assert "['book', 'lamp', 'pen']" in out.stdout
    assert "Store stopped." in out.stdout
    # 24 actors on a 2-CPU Ray: the raylet's worker-pool notice fires, and must not show
    assert "worker processes have been started" not in out.stdout + out.stderr


def test_every_api_block_runs_as_written():
    blocks = _blocks(_section("API"), "python")
    assert len(blocks) >= 6
    out = _run_python("\n".join(blocks))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "hints_pending" in out.stdout  # the status frame was printed


def test_the_readme_stands_alone():
    long_lines = [line for line in README.splitlines() if len(line) > 100]
    assert not long_lines, long_lines[:3]
    assert "DESIGN.md" not in README
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert os.path.exists(os.path.join(ROOT, target)), target
