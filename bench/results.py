"""Where a benchmark's results go: ``STEM.json`` (the numbers) and ``STEM.md`` (the tables) in one folder."""
from __future__ import annotations

import json
from pathlib import Path


def write_results(folder: Path, stem: str, result: dict, text: str) -> None:
    """``result`` as indented JSON (values JSON cannot hold as their ``str``) and ``text`` as Markdown."""
    (folder / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (folder / f"{stem}.md").write_text(text)
