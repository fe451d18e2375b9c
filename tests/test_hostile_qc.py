"""QC statistics on bad input, run as a user meets it: calls of alleles the store does not
list, plink2 report files that exist (ours, plink2's, or anything else), a prefix inside
the source. One Error line, the exit code, nothing written, nothing replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from hostile import Tree, assert_refused, run_cli

pytestmark = pytest.mark.hostile

SUFFIXES = (".afreq", ".gcount", ".hardy", ".vmiss", ".smiss", ".het")


def _store(path: Path, *, alt_width: int, top_allele: int) -> Path:
    """2L, 40 variants x 9 samples, ALT of ``alt_width`` columns; variant 33 holds
    ``top_allele`` in one call."""
    root = zarr.open_group(str(path), mode="w")
    gt = np.zeros((40, 9, 2), dtype="i1")
    gt[::3, 2] = [0, 1]
    gt[33, 4] = [0, top_allele]
    root.create_dataset("2L/calldata/GT", data=gt, chunks=(10, 4, 2))
    root.create_dataset("2L/variants/POS", data=np.arange(1, 41) * 10, chunks=(10,))
    root.create_dataset("2L/variants/REF", data=np.full(40, b"A"), chunks=(10,))
    alt = np.full((40, alt_width), b"", dtype="|S1")
    alt[:, 0] = b"C"
    root.create_dataset("2L/variants/ALT", data=alt, chunks=(10, alt_width))
    return path


def test_an_allele_the_store_does_not_list_is_refused(tmp_path: Path) -> None:
    """ALT has one column (K = 2): a call of allele 2 is bad data, named by its array and
    variants; no report file, and no part file, is left."""
    store = _store(tmp_path / "s.zarr", alt_width=1, top_allele=2)
    before = Tree(store)
    result = run_cli("stats", store, "--output", tmp_path / "out" / "P", "--format", "plink2")
    assert_refused(
        result, 4, says=("2L/calldata/GT (2L variants 0:40)", "1 call holds an allele >= 2")
    )
    before.assert_unchanged()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_allele_beyond_the_listed_alts_of_its_variant_is_refused(tmp_path: Path) -> None:
    """ALT has room for 3 but variant 33 lists one: a call of allele 3 there is refused."""
    store = _store(tmp_path / "s.zarr", alt_width=3, top_allele=3)
    result = run_cli("stats", store, "--qc", "--json")
    assert_refused(result, 4, says=("variants 0:40", "variant 33", "beyond its 2 alleles"))


def test_existing_reports_are_not_replaced_without_overwrite(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr", alt_width=3, top_allele=1)
    prefix = tmp_path / "P"
    (tmp_path / "P.smiss").write_text("#IID\tMISSING_CT\tOBS_CT\tF_MISS\nold\n")
    canary = tmp_path / "P.txt"
    canary.write_text("keep me\n")
    result = run_cli("stats", store, "--output", prefix, "--format", "plink2")
    assert_refused(result, 5, says=("P.smiss already exists", "--overwrite"))
    assert not (tmp_path / "P.afreq").exists()
    # --overwrite replaces an earlier report (its header is the one written)
    result = run_cli("stats", store, "--output", prefix, "--format", "plink2", "--overwrite")
    assert result.code == 0, result
    assert (tmp_path / "P.smiss").read_text().count("\n") == 10
    assert canary.read_text() == "keep me\n"


def test_overwrite_never_replaces_a_file_that_is_not_that_report(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr", alt_width=3, top_allele=1)
    (tmp_path / "P.het").write_text("my notes, not a report\n")
    result = run_cli("stats", store, "--output", tmp_path / "P", "--format", "plink2",
                     "--overwrite")  # fmt: skip
    assert_refused(result, 5, says=("P.het already exists and is not a plink2 .het report",))
    assert (tmp_path / "P.het").read_text() == "my notes, not a report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P.het", "s.zarr"]


def test_a_prefix_inside_the_source_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr", alt_width=3, top_allele=1)
    before = Tree(store)
    result = run_cli("stats", store, "--output", store / "2L" / "P", "--format", "plink2")
    assert_refused(result, 5, says="lies inside the source store")
    before.assert_unchanged()


def test_a_report_file_that_appears_during_the_run_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked before the run and again before the files are moved into place: a file
    made meanwhile under a report's name stays, and no report is left."""
    from zarrgeno.errors import TargetExistsError
    from zarrgeno.stats.api import _Reducer, plan_stats
    from zarrgeno.stats.qc import files
    from zarrgeno.stats.unit import run_unit

    store = _store(tmp_path / "s.zarr", alt_width=3, top_allele=1)
    plan = plan_stats(store, qc=True)
    paths = files.check_report_files(tmp_path / "P", ["afreq", "het"], overwrite=False)
    with pytest.raises(TargetExistsError, match=r"P\.het already exists"):
        with files.open_reports(paths, plan) as sink:
            reducer = _Reducer(plan, sink)
            for unit in plan.units:
                reducer.add(run_unit(unit))
            (tmp_path / "P.het").write_text("mine\n")
            sink.finish(reducer.finish("sequential", 0.0).qc)
    assert (tmp_path / "P.het").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P.het", "s.zarr"]


def test_a_refused_label_array_stops_qc_only(tmp_path: Path) -> None:
    """A 2L/variants/ALT whose metadata is refused (a pickle filter): the counts run, and
    --qc, which needs each variant's alleles, stops naming it rather than reading none."""
    import json

    store = _store(tmp_path / "s.zarr", alt_width=3, top_allele=1)
    meta = store / "2L" / "variants" / "ALT" / ".zarray"
    doc = json.loads(meta.read_text())
    doc["filters"] = [{"id": "pickle"}]
    meta.write_text(json.dumps(doc))
    before = Tree(store)
    assert run_cli("stats", store, "--json").code == 0
    result = run_cli("stats", store, "--qc", "--json")
    assert_refused(result, 4, says=("2L/variants/ALT", "pickle"))
    before.assert_unchanged()
