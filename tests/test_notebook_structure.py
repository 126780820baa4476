"""Every notebook is written for people (docs/lab.md, "Words, summaries and exercises"): stored
without outputs, links the glossary, answers its question in a ``## Summary`` and ends with
``## Exercises`` whose solutions are hidden cells tagged ``solution``. Reads the files only."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_written_for_people(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(c.get("id") for c in nb.cells), f"{path.name}: a cell without an id"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [c.id for c in code if c.outputs], f"{path.name}: stored with outputs"
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    text = "\n".join(md)
    assert "docs/glossary.md" in text, f"{path.name}: no link to the glossary"
    headings = [line.strip() for s in md for line in s.splitlines()]
    assert "## Summary" in headings, f"{path.name}: no ## Summary"
    assert "## Exercises" in headings, f"{path.name}: no ## Exercises"
    exercises = [s for s in md if s.startswith(":::{admonition} Exercise")]
    solutions = [c for c in code if "solution" in c.metadata.get("tags", [])]
    assert 2 <= len(exercises) <= 3, f"{path.name}: {len(exercises)} exercises"
    assert len(solutions) == len(exercises), f"{path.name}: {len(solutions)} solutions for {len(exercises)} exercises"
    for c in solutions:
        assert c.metadata.get("jupyter", {}).get("source_hidden"), f"{path.name}: solution {c.id} not collapsed"
    # each exercise is followed by its solution
    order = [("ex" if c.cell_type == "markdown" and c.source.startswith(":::{admonition} Exercise") else
              "sol" if c in solutions else "") for c in nb.cells]
    order = [o for o in order if o]
    assert order == ["ex", "sol"] * len(exercises), f"{path.name}: exercises and solutions out of order"
