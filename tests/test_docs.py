"""The documents that are generated from code say what the code does."""

from __future__ import annotations

from pathlib import Path

from connector.config import TABLE_MARKERS, settings_table

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_settings_table_in_docs_is_the_declarations():
    text = (DOCS / "architecture.md").read_text()
    found = TABLE_MARKERS.search(text)
    assert found, "docs/architecture.md lost its settings-table markers"
    assert found.group(2) == settings_table(), "regenerate it with: python -m connector.config docs/architecture.md"
