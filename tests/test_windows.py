"""Windows (--window N variants, --window-bp N base pairs): the windowed table summed from
the per-variant partials of the one pass, against a direct numpy / scikit-allel
computation on the same arrays (and site filter), on every backend."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_real_stores import run

from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.windows import COLUMNS

with warnings.catch_warnings():  # allel imports pkg_resources-era modules
    warnings.simplefilter("ignore")
    allel = pytest.importorskip("allel")

BACKENDS = ["sequential", "threads", "multiprocessing", "dask", "distributed"]
N_SAMPLES = 13
SIZES = {"2L": 700, "X": 333}


@pytest.fixture(autouse=True)
def small_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """One unit per row of stored chunks: windows span units, units span windows."""
    import zarrgeno.stats.api

    monkeypatch.setattr(zarrgeno.stats.api, "UNIT_CALLS", 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calls of up to 4 alleles with missing and half calls, monomorphic sites, sites
    without a call,
    positions with gaps (empty bp windows), and a site filter."""
    path = tmp_path_factory.mktemp("windows") / "w.zarr"
    root = zarr.open_group(str(path), mode="w")
    rng = np.random.default_rng(3)
    for contig, n in SIZES.items():
        gt = rng.choice(np.array([0, 1, 2, 3, -1], dtype="i1"), p=[0.8, 0.12, 0.03, 0.01, 0.04],
                        size=(n, N_SAMPLES, 2))  # fmt: skip
        gt[rng.random(n) < 0.3] = 0  # monomorphic sites
        gt[rng.random(n) < 0.05] = -1  # sites without a call: no MAF
        steps = rng.integers(1, 60, n)
        steps[n // 3 : n // 3 + 5] = 4000  # a gap of empty windows
        pos = np.cumsum(steps) + 17
        root.create_dataset(f"{contig}/calldata/GT", data=gt, chunks=(64, 5, 2))
        root.create_dataset(f"{contig}/variants/POS", data=pos, chunks=(100,))
        if contig == "2L":  # runs of passing and failing sites: copied run by run
            runs = rng.integers(20, 120, n)
            keep = np.repeat(np.arange(len(runs)) % 3 != 1, runs)[:n]
        else:  # scattered: copied by index
            keep = rng.random(n) < 0.75
        root.create_dataset(f"{contig}/variants/FILTER_PASS", data=keep, chunks=(90,))
    return path


def _expected(path: Path, contig: str, size: int, bp: bool) -> dict[str, np.ndarray]:
    """The windowed table computed directly: numpy and scikit-allel on the arrays."""
    root = zarr.open_group(str(path), mode="r")
    gt = root[f"{contig}/calldata/GT"][:]
    pos = root[f"{contig}/variants/POS"][:].astype(np.int64)
    keep = root[f"{contig}/variants/FILTER_PASS"][:]
    index = (pos - 1) // size if bp else np.arange(len(pos)) // size
    first, last = index.min(), index.max()
    bins = index - first
    n = last - first + 1

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(bins, weights=values, minlength=n)

    g = allel.GenotypeArray(gt)
    missing = g.count_missing(axis=1) * keep  # sgkit semantics: any allele missing
    het = g.count_het(axis=1) * keep
    plain = gt.copy()
    plain[(plain < 0).any(axis=2)] = -1  # half calls missing, as the QC histograms
    ac = allel.GenotypeArray(plain).count_alleles(max_allele=3)
    an = ac.sum(axis=1)
    maf = np.where(an > 0, 1 - ac.max(axis=1) / np.maximum(an, 1), 0)
    passing = total(keep.astype(float))
    calls = passing * N_SAMPLES
    maf_sites = total((keep & (an > 0)).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "start": (np.arange(first, last + 1) * size + 1) if bp else pos[::size],
            "end": (np.arange(first + 1, last + 2) * size) if bp else pos[size - 1 :: size],
            "variants": total(np.ones(len(pos))).astype(int),
            "passing_sites": passing.astype(int),
            "missing_rate": np.where(calls > 0, total(missing) / calls, np.nan),
            "heterozygosity": np.where(
                calls > total(missing), total(het) / (calls - total(missing)), np.nan
            ),
            "segregating_sites": total((ac.is_segregating() & keep).astype(float)).astype(int),
            "mean_maf": np.where(maf_sites > 0, total(maf * keep) / maf_sites, np.nan),
        }


def _check(table: dict[str, np.ndarray], want: dict[str, np.ndarray], bp: bool) -> None:
    for column, values in want.items():
        got = table[column]
        if column == "end" and not bp:  # the last window ends at the last variant
            got = got[: len(values)]
        if got.dtype.kind == "f":
            np.testing.assert_allclose(got, values, rtol=1e-12, err_msg=column)
        else:
            np.testing.assert_array_equal(got, values, err_msg=column)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bp_windows_equal_numpy_and_scikit_allel(store: Path, backend: str) -> None:
    workers = {"workers": 2} if backend != "sequential" else {}
    result = genotype_stats(store, window_bp=500, qc=["afreq", "smiss"], semantics="sgkit",
                            site_filter="FILTER_PASS", backend=backend, **workers)  # fmt: skip
    for contig in SIZES:
        table = result.windows.contig(contig)
        _check(table, _expected(store, contig, 500, bp=True), bp=True)
    assert (result.windows.contig("2L")["variants"] == 0).sum() >= 5  # the gap is listed


def test_variant_windows_equal_numpy(store: Path) -> None:
    result = genotype_stats(store, window=50, qc=True, semantics="sgkit",
                            site_filter="FILTER_PASS")  # fmt: skip
    for contig in SIZES:
        _check(result.windows.contig(contig), _expected(store, contig, 50, bp=False), bp=False)


def test_without_histograms_the_allele_columns_are_empty(store: Path) -> None:
    """Windows without QC: counts only; segregating sites and MAF are NA, not zero."""
    table = genotype_stats(store, window=100).windows
    assert not table.alleles
    rows = list(table.rows())
    assert rows[0]["segregating_sites"] is None and rows[0]["mean_maf"] is None
    assert rows[0]["variants"] == 100 and rows[0]["passing_sites"] == 100


def test_cli_writes_tsv_and_json(store: Path, tmp_path: Path) -> None:
    """--windows-output: TSV and JSON of the same numbers; --plot draws from the table."""
    tsv, doc = tmp_path / "w.tsv", tmp_path / "w.json"
    args = ("stats", str(store), "--semantics", "sgkit", "--site-filter", "FILTER_PASS",
            "--window-bp", "500")  # fmt: skip
    run(*args, "--windows-output", str(tsv), "--plot", str(tmp_path / "w.png"))
    run(*args, "--windows-output", str(doc))
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t") == list(COLUMNS)
    data = json.loads(doc.read_text())
    assert data["window"] == {"size": 500, "unit": "bp", "coordinates": "position"}
    assert len(data["windows"]) == len(lines) - 1
    want = _expected(store, "2L", 500, bp=True)
    first = data["windows"][0]
    assert first["contig"] == "2L" and first["start"] == want["start"][0]
    assert first["segregating_sites"] == want["segregating_sites"][0]
    assert abs(first["mean_maf"] - want["mean_maf"][0]) < 1e-12
    cells = lines[1].split("\t")
    assert cells[:5] == ["2L", str(want["start"][0]), str(want["end"][0]),
                         str(want["variants"][0]), str(want["passing_sites"][0])]  # fmt: skip
    assert float(cells[5]) == pytest.approx(want["missing_rate"][0], rel=1e-5)
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--window-bp", "100"], 2, "--window-bp applies to --plot and --windows-output"),
        (["--window", "5", "--window-bp", "100", "--windows-output", "W.tsv"], 2, "not both"),
        (["--windows-output", "W.csv"], 2, ".tsv or .json"),
    ],
)
def test_window_options_are_checked_before_counting(
    store: Path, tmp_path: Path, args: list[str], code: int, words: str
) -> None:
    from test_stats_cli import run as run_code

    args = [a.replace("W.", str(tmp_path / "W.")) for a in args]
    got, _, err = run_code("stats", str(store), *args)
    assert got == code and words in err, err
    assert not list(tmp_path.iterdir())


def test_bp_windows_need_positions(tmp_path: Path) -> None:
    from test_stats_cli import run as run_code

    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    root.create_dataset("2L/calldata/GT", data=np.zeros((10, 3, 2), dtype="i1"))
    got, _, err = run_code("stats", str(tmp_path / "s.zarr"), "--window-bp", "100",
                           "--windows-output", str(tmp_path / "w.tsv"))  # fmt: skip
    assert got == 3 and "--window-bp needs positions" in err and "--sites" in err
    assert not (tmp_path / "w.tsv").exists()


def test_an_existing_windows_file_needs_overwrite(store: Path, tmp_path: Path) -> None:
    from test_stats_cli import run as run_code

    target = tmp_path / "w.tsv"
    target.write_text("keep\n")
    got, _, err = run_code("stats", str(store), "--windows-output", str(target))
    assert got == 5 and "already exists" in err
    assert target.read_text() == "keep\n"
