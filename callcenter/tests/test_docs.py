"""The documentation keeps up with the code.

Every environment variable that ``callcenter/settings.py`` reads is a row of
the settings tables in ``docs/operations.md``, exactly once; the README stays
a short front door that links every page under ``docs/``; and every relative
link in the docs leads to a file and heading that exist.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "callcenter" / "settings.py"
OPERATIONS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
ENV_READERS = {"env_str", "env_bool", "env_int", "env_float", "env_list", "env_choice"}


def settings_env_vars(source: str) -> set[str]:
    """Names passed as the first argument to an env reader in settings.py."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ENV_READERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def documented_settings(markdown: str) -> list[str]:
    """Variables named in the first cell of the rows of the Settings section."""
    section = markdown.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        first_cell = line.split("|")[1]
        names += re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell)
    return names


def test_settings_docs__every_setting_read_is_documented_once():
    read = settings_env_vars(SETTINGS.read_text())
    documented = documented_settings(OPERATIONS.read_text())
    assert len(read) > 30  # the parser found the readers
    missing = sorted(read - set(documented))
    twice = sorted({name for name in documented if documented.count(name) > 1})
    assert not missing, f"settings not in docs/operations.md: {missing}"
    assert not twice, f"settings listed more than once: {twice}"


def test_settings_docs__every_documented_setting_is_read():
    read = settings_env_vars(SETTINGS.read_text())
    stale = sorted(set(documented_settings(OPERATIONS.read_text())) - read)
    assert not stale, f"docs/operations.md lists settings nobody reads: {stale}"


def test_readme__is_short_and_links_every_docs_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    pages = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))
    assert pages, "no pages under docs/"
    unlinked = [page for page in pages if f"]({page}" not in text]
    assert not unlinked, f"README.md does not link {unlinked}"
    assert "](CHANGELOG.md)" in text


def github_anchor(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {
        github_anchor(m.group(1))
        for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)
    }


def test_docs__relative_links_lead_to_existing_files_and_headings():
    pages = [README, ROOT / "CHANGELOG.md", ROOT / "bench" / "README.md"]
    pages += sorted(ROOT.glob("docs/*.md"))
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            missing_anchor = (
                linked.exists()
                and bool(anchor)
                and linked.suffix == ".md"
                and anchor not in anchors(linked)
            )
            if not linked.exists() or missing_anchor:
                broken.append(f"{page.name}: {target}")
    assert not broken, f"broken links: {broken}"
