"""The documents a newcomer reads stay short and hang together: README.md fits in 12 KB and
docs/RESULTS.md in 20 KB, every relative link of README.md and docs/*.md reaches a file (and, for
a `#fragment` into a Markdown file, a heading or anchor there), and CI runs the README's test command."""

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)
ANCHOR = re.compile(r'<a id="([^"]+)"')


def documents(root: str = REPO) -> list[str]:
    return [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: str) -> set[str]:
    with open(path) as f:
        text = f.read()
    return {_slug(h) for h in HEADING.findall(text)} | set(ANCHOR.findall(text))


def broken_links(paths: list[str]) -> list[str]:
    """'file: target (why)' for each relative link that reaches nothing."""
    out = []
    for path in paths:
        with open(path) as f:
            text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # links inside code blocks are code
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, fragment = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            rel = os.path.relpath(path, REPO)
            if not os.path.exists(dest):
                out.append(f"{rel}: {target} (no such file)")
            elif fragment and dest.endswith(".md") and fragment not in anchors(dest):
                out.append(f"{rel}: {target} (no heading or anchor {fragment!r})")
    return out


def test_the_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text('# Title\n\n## Some section: two\n\n<a id="x"></a>\n')
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md) [sec](docs/a.md#some-section-two) [x](docs/a.md#x) [web](https://example.org)\n"
        "[gone](docs/b.md) [bad](docs/a.md#nope) ![img](docs/missing.png)\n```\n[code](not/a/link.md)\n```\n")
    found = broken_links(documents(str(tmp_path)))
    assert [f.split(": ", 1)[1] for f in found] == [
        "docs/b.md (no such file)", "docs/a.md#nope (no heading or anchor 'nope')", "docs/missing.png (no such file)"]


def test_every_relative_link_resolves():
    assert not broken_links(documents())


@pytest.mark.parametrize("name, limit", [("README.md", 12_000), ("docs/RESULTS.md", 20_000)])
def test_the_front_documents_stay_short(name, limit):
    size = os.path.getsize(os.path.join(REPO, name))
    assert size <= limit, f"{name} is {size} bytes; move detail to a docs/ page (at most {limit})"


def test_ci_runs_the_test_command_the_readme_gives():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci = f.read()
    (command,) = re.findall(r"pip install -r requirements.txt && python (-m pytest[^\n]*)", readme)
    assert re.search(rf"^python3? {re.escape(command.strip())}$", ci, re.M), command
