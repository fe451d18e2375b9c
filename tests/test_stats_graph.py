"""What ``stats --visualize`` draws: every node of the task graph names its contig."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import zarr
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app

pytestmark = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed"
)

#: Ag1000G's contigs: dask's own labels kept X but dropped 2L, 2R, 3L and 3R (a key's word
#: that starts with a digit ends its label).
CONTIGS = {"2L": 600, "2R": 450, "3L": 300, "3R": 300, "X": 150}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("graph") / "five.zarr"
    build_store(str(path), contigs=CONTIGS, chunks=(150, 5, 2))
    zarr.consolidate_metadata(str(path))
    return path


def _labels(dot: str) -> list[str]:
    """The label of every node of a graph in Graphviz's dot language (not the default
    ``\\N``, the node's name, that ``dot`` writes for all nodes)."""
    found = re.findall(r'\blabel=("(?:[^"\\]|\\.)*"|[^,\]\s]+)', dot)
    return [label.strip('"') for label in found if label != '"\\N"']


@pytest.mark.parametrize(
    "backend",
    [["-b", "dask"], ["-b", "dask", "--range", "100:400"], ["-b", "distributed", "-w", "1"]],
    ids=["dask", "dask-range", "distributed"],
)
def test_every_node_names_its_contig(backend: list[str], store: Path, tmp_path: Path) -> None:
    pytest.importorskip("graphviz")
    drawn = tmp_path / "graph.dot"
    result = CliRunner().invoke(app, ["stats", str(store), *backend, "--visualize", str(drawn)])
    assert result.exit_code == 0, result.output
    labels = _labels(drawn.read_text())
    assert len(labels) > len(CONTIGS)
    unnamed = [label for label in labels if not set(re.split(r"[ /(-]", label)) & set(CONTIGS)]
    assert unnamed == [], unnamed
    for contig in CONTIGS:
        assert f"count-{contig}" in labels
        assert any(label.startswith(f"{contig} variants ") for label in labels)
