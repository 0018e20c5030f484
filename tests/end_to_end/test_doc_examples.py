"""Every shell example of README.md, docs/*.md and deploy/README.md, run as a reader runs it.

One `ownercare run` with a small fleet, on its own state directory and ports (the OWNERCARE_*
variables). Then, per page, every ```sh / ```bash / ```shell block, verbatim and in order, in
one `bash` with `set -euo pipefail` (a variable one block sets is there in the next), at the
repository root, with only what a reader's shell has: PATH with .venv/bin first, HOME, and
OWNERCARE_STATE_DIR, the variable the pages tell the reader about, pointing at this run. A
failing block fails the test with its page, line, first line and output.

A block that cannot run in a test by nature (the stack or the suite itself, Docker, root)
carries `<!-- not-run: why -->` on the line above it. It is still checked: `bash -n`, and each
`ownercare` command in it against the CLI's parser. A block that does not carry the mark but
names such a command fails, and so does a fenced block without a language (a command in it
would run nowhere). docs/ota-walkthrough.md runs in test_ota_walkthrough.py, not here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ownercare import embedded
from ownercare.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "docs" / "ota-walkthrough.md"
PAGES = [ROOT / "README.md",
         *sorted(p for p in (ROOT / "docs").glob("*.md") if p != WALKTHROUGH),
         ROOT / "deploy" / "README.md"]
SHELL = {"sh", "bash", "shell"}
# Commands that start the stack or the suite, need Docker or root, or change the machine.
NEEDS_MARK = {"make", "docker", "docker-compose", "apt-get", "apt", "sudo", "systemctl",
              "pre-commit", "mosquitto_passwd"}
FLEET = ["--vehicles", "6", "--chargers", "2", "--speed", "3600",
         "--faults", "weak_12v:1,dtc:1", "--duration", "30d"]
PAGE_TIMEOUT_S = 180

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:(.*?)-->$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    not_run: str | None  # the mark's reason

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, start = opening.group(1), i
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            i += 1
        assert i < len(lines), f"{page.relative_to(ROOT)}:{start + 1}: the block is never closed"
        mark = NOT_RUN.match(lines[start - 1].strip()) if start else None
        found.append(Block(page, start + 1, opening.group(2).lower(),
                           "\n".join(lines[start + 1:i]) + "\n",
                           mark.group(1).strip() if mark else None))
        i += 1
    return found


def shell_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in SHELL]


def simple_commands(script: str) -> list[list[str]]:
    """The words of each simple command, quotes removed, commands inside `$(...)` included.
    Enough of the shell's grammar to find command names and options on these pages, not a
    shell parser (no heredocs, no double quotes nested inside `"$(...)"`)."""
    commands: list[list[str]] = []
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i = 0

    def end_word() -> None:
        nonlocal word, in_word
        if in_word:
            words.append("".join(word))
        word, in_word = [], False

    def end_command() -> None:
        nonlocal words
        end_word()
        if words:
            commands.append(words)
        words = []

    while i < len(script):
        c = script[i]
        if c == "\\" and i + 1 < len(script):
            if script[i + 1] != "\n":
                word.append(script[i + 1])
                in_word = True
            i += 2
        elif c == "'":
            end = script.index("'", i + 1)
            word.append(script[i + 1:end])
            in_word, i = True, end + 1
        elif c == '"':
            end = i + 1
            while script[end] != '"':
                end += 2 if script[end] == "\\" else 1
            inner = script[i + 1:end]
            for sub in re.findall(r"\$\((.*)\)", inner, re.S):
                commands += simple_commands(sub)
            word.append(inner)
            in_word, i = True, end + 1
        elif c == "#" and not in_word:
            newline = script.find("\n", i)
            i = len(script) if newline < 0 else newline
        elif c in " \t":
            end_word()
            i += 1
        elif c in "\n;|&()":
            end_command()
            i += 1
        else:
            word.append(c)
            in_word, i = True, i + 1
    end_command()
    return commands


def names(command: list[str]) -> list[str]:
    """The command's words that could name a program: no spaces, the path left off."""
    return [os.path.basename(w) for w in command if w and not any(c.isspace() for c in w)]


def needs_mark(block: Block) -> list[str]:
    found = []
    for command in simple_commands(block.text):
        words = names(command)
        found += [w for w in words if w in NEEDS_MARK]
        found += [f"ownercare {nxt}" for w, nxt in zip(words, words[1:], strict=False)
                  if w == "ownercare" and nxt == "run"]  # a second stack
    return list(dict.fromkeys(found))


def fails_on_http_errors(command: list[str]) -> bool:
    return any(w in ("--fail", "--fail-with-body") or re.fullmatch(r"-[a-zA-Z]*f[a-zA-Z]*", w)
               for w in command[1:])


def cli_errors(block: Block) -> list[str]:
    """Each `ownercare` command of the block that the CLI's parser refuses, with its error."""
    errors = []
    for command in simple_commands(block.text):
        starts = [n for n, w in enumerate(command) if os.path.basename(w) == "ownercare"]
        if not starts:
            continue
        args = command[starts[0] + 1:]
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                build_parser().parse_args(args)
        except SystemExit as exc:
            if exc.code:
                errors.append(f"ownercare {' '.join(args)}: {stderr.getvalue().strip()}")
    return errors


def test_the_pages_are_found_and_the_walkthrough_has_its_own_test() -> None:
    assert {"README.md", "docs/api.md", "deploy/README.md"} <= {
        str(p.relative_to(ROOT)) for p in PAGES}
    assert WALKTHROUGH not in PAGES
    assert (Path(__file__).parent / "test_ota_walkthrough.py").exists()
    assert any(b.not_run is None for page in PAGES for b in shell_blocks(page))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_is_tagged_and_every_shell_block_is_run_or_marked(page: Path) -> None:
    problems = []
    lines = page.read_text().splitlines()
    marks = {n + 1 for n, ln in enumerate(lines) if ln.strip().startswith("<!-- not-run")}
    for block in blocks(page):
        if not block.lang:
            problems.append(f"{block.where}: a block without a language: ```sh if the reader "
                            "runs it, else ```text (output, diagrams) or the language it is in")
        if block.line - 1 in marks:
            marks.discard(block.line - 1)
            if block.lang not in SHELL or not block.not_run:
                problems.append(f"{block.where}: `<!-- not-run: why -->` belongs above a shell "
                                "block and says why it cannot run in a test")
        if block.lang not in SHELL:
            continue
        if block.not_run is None:
            if needs := needs_mark(block):
                problems.append(f"{block.where}: `{block.first_line}` runs {', '.join(needs)}, "
                                "which a test cannot: make it runnable or put "
                                "`<!-- not-run: why -->` on the line above it")
            # curl exits 0 on an HTTP error unless told to fail: the test would not see it.
            problems += [f"{block.where}: `{' '.join(c[:4])} ...` needs -f (or --fail)"
                         for c in simple_commands(block.text)
                         if names(c)[:1] == ["curl"] and not fails_on_http_errors(c)]
        else:
            syntax = subprocess.run(["bash", "-n"], input=block.text, capture_output=True,
                                    text=True, check=False)
            if syntax.returncode:
                problems.append(f"{block.where}: not valid bash: {syntax.stderr.strip()}")
            problems += [f"{block.where}: {e}" for e in cli_errors(block)]
    problems += [f"{page.relative_to(ROOT)}:{n}: a not-run mark with no block right below it"
                 for n in sorted(marks)]
    assert not problems, "\n".join(problems)


def test_the_checks_see_what_they_look_for() -> None:
    """The rules above on blocks made to break them, so a check that stopped matching shows."""
    fake = ROOT / "README.md"
    assert simple_commands('A=$(curl -sS "$API/x" | jq .) # curl\nmake run; echo "$(ls -l)"') \
        == [["A=$"], ["curl", "-sS", "$API/x"], ["jq", "."], ["make", "run"], ["ls", "-l"],
            ["echo", "$(ls -l)"]]
    assert needs_mark(Block(fake, 1, "sh", "sudo apt-get install -y x\n", None)) \
        == ["sudo", "apt-get"]
    assert needs_mark(Block(fake, 1, "sh", ".venv/bin/ownercare run --vehicles 3\n", None)) \
        == ["ownercare run"]
    assert not needs_mark(Block(fake, 1, "sh", 'echo "make the most of it"\n', None))
    assert not fails_on_http_errors(["curl", "-sS", "-X", "POST", "-d", "{}", "u"])
    assert fails_on_http_errors(["curl", "-sSfN", "u"])
    assert cli_errors(Block(fake, 1, "sh", "ownercare eval --seeds 1-2 --no-such-flag\n", None))
    assert not cli_errors(Block(fake, 1, "sh", "/usr/bin/time -f '%e' \\\n"
                                "  ownercare eval --seed 1 --vehicles 5 --days 2\n", None))


def wait_for(what: str, predicate: Callable[[], Any], timeout_s: float,
             proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ownercare run exited with {proc.returncode} while waiting "
                                 f"for {what}:\n{log.read_text()[-4000:]}")
        if value := predicate():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}:\n"
                         f"{log.read_text()[-4000:]}")


def run_json(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state / "run.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None  # not written yet, or half written


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running `ownercare run`, its first care case open (the README promises cases within
    a couple of minutes; docs/api.md works one); its state directory."""
    tmp = tmp_path_factory.mktemp("doc-examples")
    state, log = tmp / "state", tmp / "run.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWNERCARE_")}
    env |= {"OWNERCARE_STATE_DIR": str(state),
            **{f"OWNERCARE_{name}_PORT": str(embedded.free_port())
               for name in ("API", "MQTT", "KAFKA")}}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ownercare", "run", *FLEET],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        info = wait_for("run.json", lambda: run_json(state), 120, proc, log)
        auth = {"Authorization": f"Bearer {info['api_key']}"}
        wait_for("the first care case", lambda: httpx.get(
            f"{info['api_url']}/cases", headers=auth, timeout=10).json()["items"], 180, proc, log)
        yield state
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reader_env(state: Path) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    env = {"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
           "OWNERCARE_STATE_DIR": str(state)}
    env |= {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TMPDIR") if k in os.environ}
    return env


def page_script(runnable: list[Block]) -> str:
    # \036 (record separator) before each block splits the output per block.
    parts = ["set -euo pipefail"]
    for n, block in enumerate(runnable):
        parts += [f"printf '\\036%s\\n' {n}", block.text]
    return "\n".join([*parts, "printf '\\036end\\n'"])


def run_page(page: Path, state: Path, out_path: Path) -> None:
    runnable = [b for b in shell_blocks(page) if b.not_run is None]
    for block in runnable:  # never start a second stack, the suite or Docker from here
        if needs := needs_mark(block):
            pytest.fail(f"{block.where}: not run: it runs {', '.join(needs)} without the "
                        "`<!-- not-run: why -->` mark", pytrace=False)
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", page_script(runnable)], cwd=ROOT,
                                env=reader_env(state), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status: int | None = proc.wait(PAGE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # bash and what the block started
            proc.wait()
            status = None
    *_, last = out_path.read_text(errors="replace").split("\036")
    reached, _, output = last.partition("\n")
    if status == 0 and reached == "end":
        return
    if not reached.isdigit():
        pytest.fail(f"{page.relative_to(ROOT)}: bash exited with {status} before the first "
                    f"block:\n{output[-4000:]}", pytrace=False)
    block = runnable[int(reached)]
    why = (f"still running after {PAGE_TIMEOUT_S} s" if status is None else
           f"exit status {status}" if status else "the page's script ended here")
    pytest.fail(f"{block.where}: the block starting `{block.first_line}` failed ({why}); "
                f"its output:\n{output[-4000:]}", pytrace=False)


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(b.not_run is None for b in shell_blocks(p))],
    ids=lambda p: str(p.relative_to(ROOT)))
def test_the_shell_examples_run_as_written(page: Path, stack: Path, tmp_path: Path) -> None:
    run_page(page, stack, tmp_path / "blocks.out")
