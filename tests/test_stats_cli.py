"""``zarrgeno stats`` and ``zarrgeno backends`` as a user runs them: output, files, errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_stats_reference import naive_counts
from typer.testing import CliRunner

import zarrgeno.stats.api as stats_api
from zarrgeno.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_summary_table(dir_store) -> None:
    path, written = dir_store
    code, out, err = run("stats", str(path), "-b", "sequential")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(
        f"Genotype statistics of {path}: 7 samples, tutorial semantics (sequential"
    )
    header = lines[1].split()
    assert header[:4] == ["contig", "total_pos", "complete_data", "more_anc_hom"]
    row_2l = next(line.split() for line in lines if line.startswith("2L "))
    ref = naive_counts(written["2L"])
    assert row_2l[1:4] == ["1,000", f"{ref.complete_data:,}", f"{ref.more_anc_hom:,}"]
    assert any(line.startswith("total ") for line in lines)
    assert "--per-sample lists each sample" in out


def test_per_sample_table(dir_store) -> None:
    path, written = dir_store
    code, out, _ = run("stats", str(path), "-b", "sequential", "--per-sample", "-c", "X")
    assert code == 0
    row = next(line.split() for line in out.splitlines() if line.startswith("S003 "))
    ref = naive_counts(written["X"]).sample[:, 3]
    assert row[1:4] == [f"{v:,}" for v in ref]


def test_json_has_the_tutorial_numbers_and_per_sample_counts(dir_store) -> None:
    path, written = dir_store
    code, out, _ = run("stats", str(path), "--json", "-b", "dask", "--semantics", "sgkit")
    assert code == 0
    data = json.loads(out)
    assert data["semantics"] == "sgkit"
    by_contig = {c["contig"]: c for c in data["contigs"]}
    for contig, gt in written.items():
        ref = naive_counts(gt, "sgkit")
        c = by_contig[contig]
        assert (c["total_pos"], c["complete_data"], c["more_anc_hom"]) == (
            len(gt),
            ref.complete_data,
            ref.more_anc_hom,
        )
        assert [s["n_het"] for s in c["samples"]] == ref.sample[2].tolist()
        assert c["n_missing"] == ref.sample[0].sum()
    assert data["total"]["total_pos"] == 1450
    assert len(data["total"]["samples"]) == 7


def test_output_tsv_and_zarr(dir_store, tmp_path: Path) -> None:
    path, written = dir_store
    tsv = tmp_path / "counts"
    code, _, err = run(
        "stats", str(path), "-b", "sequential", "--output", str(tsv), "--range", "10:310"
    )
    assert code == 0, err
    rows = (tsv / "variants.tsv").read_text().splitlines()
    assert rows[0].split("\t") == [
        "#CHROM",
        "POS",
        "VARIANT",
        "MISSING_CT",
        "HOM_REF_CT",
        "HET_CT",
        "OBS_CT",
        "F_MISS",
    ]
    assert len(rows) == 1 + 300 + 300
    ref = naive_counts(written["2L"][10:310])
    first = rows[1].split("\t")
    assert first[:3] == ["2L", "NA", "10"]
    assert [int(x) for x in first[3:6]] == ref.variant[:, 0].tolist()
    assert float(first[7]) == pytest.approx(ref.variant[0, 0] / 7, abs=1e-6)
    samples = (tsv / "samples.tsv").read_text().splitlines()
    assert samples[0].split("\t")[:2] == ["#IID", "MISSING_CT"] and len(samples) == 8
    assert (tsv / "samples_by_contig.tsv").read_text().count("\n") == 1 + 14

    store = tmp_path / "counts.zarr"
    code, _, err = run("stats", str(path), "-b", "dask", "--output", str(store))
    assert code == 0, err
    out = zarr.open_group(str(store), mode="r")
    for contig, gt in written.items():
        ref = naive_counts(gt)
        np.testing.assert_array_equal(out[f"{contig}/variants/n_het"][:], ref.variant[2])
        np.testing.assert_array_equal(out[f"{contig}/samples/n_missing"][:], ref.sample[0])
        assert out[contig].attrs["total_pos"] == len(gt)
    assert out["samples"][:].tolist() == [f"S{i:03d}" for i in range(7)]


@pytest.mark.hostile
def test_output_is_never_overwritten_without_overwrite(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    target = tmp_path / "c.zarr"
    target.mkdir()
    (target / "keep").write_text("mine")
    code, _, err = run("stats", str(path), "--output", str(target))
    assert code == 5 and "--overwrite" in err
    assert (target / "keep").read_text() == "mine"
    code, _, err = run("stats", str(path), "--output", str(path / "inside"))
    assert code == 5 and "source" in err
    code, _, err = run("stats", str(path), "--output", str(target), "--overwrite")
    assert code == 5 and "remove it yourself" in err  # not an earlier --output
    assert (target / "keep").read_text() == "mine"
    (target / "keep").unlink()
    for _ in range(2):  # an empty directory, then the earlier --output
        code, _, _ = run(
            "stats", str(path), "-b", "sequential", "--output", str(target), "--overwrite"
        )
        assert code == 0 and (target / ".zgroup").is_file()


def test_plot_writes_a_png(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    png = tmp_path / "rates.png"
    code, _, err = run("stats", str(path), "-b", "sequential", "--plot", str(png), "--window", "50")
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run("stats", str(path), "--plot", str(png))
    assert code == 5 and "already exists" in err
    code, _, err = run("stats", str(path), "--plot", str(tmp_path / "rates.jpg"))
    assert code == 2 and ".png, .svg or .pdf" in err


def test_plot_without_matplotlib_names_the_extra(
    dir_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = dir_store
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run("stats", str(path), "--plot", str(tmp_path / "p.png"))
    assert code == 2
    assert err.strip() == "Error: --plot needs matplotlib: pip install 'zarrgeno[plot]'"
    assert out == ""


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_visualize_writes_the_task_graph(dir_store, tmp_path: Path) -> None:
    pytest.importorskip("graphviz")
    path, _ = dir_store
    svg = tmp_path / "graph.svg"
    code, _, err = run("stats", str(path), "-b", "dask", "--visualize", str(svg), "-c", "X")
    assert code == 0, err
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "count&#45;X" in text  # "-" escaped


@pytest.mark.hostile
def test_visualize_without_dot_is_a_clear_error(
    dir_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = dir_store
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = run("stats", str(path), "-b", "dask", "--visualize", str(tmp_path / "g.svg"))
    assert code == 2 and "apt-get install graphviz" in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["-b", "spark"],
            2,
            "'spark' is not one of: sequential, threads, multiprocessing, dask, distributed",
        ),
        (
            ["-b", "sequential", "--scheduler", "tcp://127.0.0.1:8786"],
            2,
            "--scheduler does not apply",
        ),
        (["-b", "dask", "--persist"], 2, "--persist does not apply to the dask backend"),
        (
            ["-b", "dask", "--unit-timeout", "5"],
            2,
            "Error: --unit-timeout does not apply to the dask backend",
        ),
        (
            ["-b", "sequential", "--visualize", "g.svg"],
            2,
            "use it with --backend dask or distributed",
        ),
        (["--range", "9:3"], 2, "0 <= START < STOP"),
        (["--range", "5000:"], 2, "starts at 5,000"),
        (["-c", "3R"], 3, "no contig 3R"),
        (["--samples", "S001,nobody"], 3, "unknown sample(s): nobody"),
        (["--samples", "@missing-file.txt"], 3, "no file missing-file.txt"),
        (["--format", "tsv"], 2, "--format applies to --output"),
        (["--window", "10"], 2, "--window applies to --plot and --windows-output"),
        (["--semantics", "plink"], 2, "Invalid value for '--semantics'"),
        (["-b", "distributed", "--scheduler", "nonsense"], 2, "not of the form tcp://HOST:PORT"),
    ],
)
@pytest.mark.hostile
def test_bad_options(dir_store, args: list[str], code: int, message: str) -> None:
    path, _ = dir_store
    got, out, err = run("stats", str(path), *args)
    assert got == code, err
    assert message in " ".join(err.replace("│", " ").split())  # typer boxes and wraps usage errors
    assert out == "" and "Traceback" not in err


@pytest.mark.hostile
def test_a_missing_chunk_fails_unless_allowed(dir_store) -> None:
    path, _ = dir_store
    (path / "X" / "calldata" / "GT" / "1.1.0").unlink()
    code, out, err = run("stats", str(path), "-b", "sequential")
    assert code == 4 and "chunk X/calldata/GT/1.1.0 is missing" in err and out == ""
    code, out, _ = run("stats", str(path), "-b", "sequential", "--allow-missing", "--json")
    assert code == 0 and json.loads(out)["total"]["total_pos"] == 1450


@pytest.mark.hostile
def test_missing_store_is_exit_3(tmp_path: Path) -> None:
    code, _, err = run("stats", str(tmp_path / "nothing.zarr"))
    assert code == 3 and err.startswith("Error: no store at")


def test_samples_from_a_file_in_the_given_order(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    names = tmp_path / "names.txt"
    names.write_text("# the two I care about\nS005\n\nS002\n")
    code, out, _ = run("stats", str(path), "--samples", f"@{names}", "--json", "-b", "sequential")
    assert code == 0
    data = json.loads(out)
    assert [s["sample"] for s in data["total"]["samples"]] == ["S005", "S002"]


def test_progress_bar_does_not_disturb_the_output(dir_store) -> None:
    path, _ = dir_store
    code, out, _ = run("stats", str(path), "--progress", "--json", "-b", "sequential")
    assert code == 0 and json.loads(out)["total"]["total_pos"] == 1450
    code, out, _ = run("stats", str(path), "--progress", "-b", "sequential")
    assert code == 0 and out.startswith("Genotype statistics")


def test_the_cli_passes_options_through_unchanged(
    dir_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command parses, then makes one library call with exactly these arguments."""
    path, _ = dir_store
    seen: dict[str, object] = {}
    real_plan, real_compute = stats_api.plan_stats, stats_api.compute_stats

    def plan(source, **kwargs):
        seen["plan"] = kwargs
        return real_plan(source, **kwargs)

    def compute(plan_, **kwargs):
        seen["compute"] = {k: v for k, v in kwargs.items() if k not in ("progress", "notify")}
        return real_compute(plan_, **kwargs)

    monkeypatch.setattr(stats_api, "plan_stats", plan)
    monkeypatch.setattr(stats_api, "compute_stats", compute)
    code, _, err = run(
        "stats",
        str(path),
        "-c",
        "X",
        "-c",
        "2L",
        "--range",
        "5:50",
        "--samples",
        "S001,S000",
        "--semantics",
        "sgkit",
        "-b",
        "multiprocessing",
        "-w",
        "2",
        "--json",
    )
    assert code == 0, err
    assert seen["plan"] == {
        "contigs": ["X", "2L"],
        "variants": (5, 50),
        "samples": ["S001", "S000"],
        "semantics": "sgkit",
        "per_variant": False,
        "allow_missing": None,  # None: decided from the store
    }
    assert seen["compute"] == {"backend": "multiprocessing", "workers": 2, "max_mem": "4GB"}


def test_backends_command() -> None:
    code, out, _ = run("backends")
    assert code == 0
    for name in ("sequential", "multiprocessing", "dask", "distributed"):
        assert any(line.startswith(name + " ") for line in out.splitlines())
    code, out, _ = run("backends", "--json")
    names = [b["name"] for b in json.loads(out)]
    assert names[:5] == ["sequential", "threads", "multiprocessing", "dask", "distributed"]


def test_help_lists_backends_from_the_registry() -> None:
    res = runner.invoke(app, ["stats", "--help"], env={"COLUMNS": "300"})
    code, out = res.exit_code, res.stdout
    assert code == 0
    assert "Example: zarrgeno stats" in out
    assert "sequential, threads, multiprocessing, dask, distributed" in " ".join(out.split())
