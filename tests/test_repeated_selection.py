"""A contig or array named twice is used once; --scheduler implies the distributed backend."""

from __future__ import annotations

import json

import pytest
from test_stats_cli import run

from zarrgeno.stats.backends import default_backend


@pytest.mark.parametrize("backend", ["threads", "sequential", "dask", "distributed"])
def test_a_contig_named_twice_is_counted_once(dir_store, backend: str) -> None:
    path, written = dir_store
    code, out, err = run("stats", str(path), "-c", "X", "-c", "X", "-b", backend, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [c["contig"] for c in doc["contigs"]] == ["X"]
    assert doc["contigs"][0]["total_pos"] == len(written["X"])


def test_an_array_named_twice_is_checked_once(dir_store) -> None:
    path, _ = dir_store
    gt = "X/calldata/GT"
    code, out, err = run("verify", str(path), str(path), "--array", gt, "--array", "/" + gt)
    assert code == 0, err
    assert "identical: 1 array(s)" in out
    code, out, err = run("verify", str(path), "--array", gt, "--array", gt, "--json")
    assert code == 0, err
    assert [a["path"] for a in json.loads(out)["arrays"]] == [gt]


def test_scheduler_alone_implies_the_distributed_backend(dir_store) -> None:
    path, _ = dir_store
    assert default_backend(scheduler="tcp://127.0.0.1:1") == "distributed"
    # Nothing listens on port 1: the distributed backend tries it and says so (exit 7);
    # any other backend would refuse the option as a usage error (exit 2).
    code, _, err = run("stats", str(path), "--scheduler", "tcp://127.0.0.1:1", "--timeout", "1")
    assert code == 7, err
    assert "127.0.0.1:1" in err
    code, _, err = run("stats", str(path), "--scheduler", "tcp://127.0.0.1:1", "-b", "threads")
    assert code == 2, err
