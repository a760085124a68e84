"""The README's "add a …" guides show exactly the commands tests/test_example_plugin.py runs, and the README
stays a short guide (≤ 150 lines) whose links resolve inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_example_plugin import EXAMPLE, guide_commands

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
GUIDES = "## Extend it"


def readme_guide_commands() -> list[str]:
    """Command lines of the bash blocks in the README's guide section, in order."""
    text = README.read_text()
    section = text.split(GUIDES, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_guides_run_the_example_plugin_commands_as_written() -> None:
    assert readme_guide_commands() == guide_commands(EXAMPLE / "README.md")
    assert len(readme_guide_commands()) >= 8


def test_readme_is_a_short_guide_with_a_module_map_and_three_guides() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert "## Where things are" in text
    for what in ("**A method**", "**A task**", "**A trainer**"):
        assert what in text.split(GUIDES, 1)[1]


def test_every_relative_link_and_mentioned_path_of_the_readme_exists() -> None:
    text = README.read_text()
    links = re.findall(r"\]\(([^)#]+)\)", text)
    paths = re.findall(r"`((?:harness|methods|examples|docs|results|datasets|tests)/[\w./-]*)`", text)
    missing = [p for p in links + paths if "<" not in p and "..." not in p and not (REPO / p).exists()]
    assert missing == []
