"""Stores written by a real tool (scikit-allel 1.3.13's ``vcf_to_zarr``), through every command.

Each store comes from a VCF written here by hand; ``stats`` must give the counts a few-line
parser of that VCF text gives, under both semantics, on every backend. String arrays
(``samples``, ``variants/ID``, ``REF``, ``ALT``, ``CHROM``) are object arrays with the
``vlen-utf8`` filter, which zarrgeno used to refuse.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.io.inspection import inspect_store
from zarrgeno.io.zipstore import ZipStore

with warnings.catch_warnings():  # allel imports pkg_resources-era modules
    warnings.simplefilter("ignore")
    allel = pytest.importorskip("allel")

SAMPLES = ["NG-01", "NG-02", "BF-03", "BF-04", "sample with space"]
#: (pos, id, ref, alt, genotypes): hom-ref, het both ways, phased, missing, partial calls,
#: rows where several samples are missing, a multi-allelic site.
ROWS = [
    (101, "rs1", "A", "T", ["0/0", "0/1", "1/0", "./.", "1/1"]),
    (205, ".", "C", "G,TT", ["./.", "./.", "0/0", "1/2", "./."]),
    (310, "rs3", "G", "A", ["./1", "1/.", "0|1", "0/0", "0/0"]),
    (412, "rs4", "T", "C", ["0/0", "0/0", "0/0", "0/0", "0/0"]),
    (413, ".", "TA", "T", ["1/1", "./.", "./.", "./.", "0/1"]),
    (520, "rs6", "A", "C,G,T", ["2/3", "0/3", "./0", "0/.", "1|1"]),
    (600, "rs7", "C", "T", ["0/1", "0/1", "0/1", "0/1", "./."]),
    (733, ".", "G", "C", ["0/0", "./.", "0/0", "1/0", "0/0"]),
    (801, "rs9", "A", "G", [".|.", "0/0", "1/1", "0/1", "1/0"]),
    (950, "rs10", "T", "A", ["0/0", "0/0", "./1", "./.", "0/1"]),
]


def vcf_text() -> str:
    header = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=2L,length=1000>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        "\t".join(
            ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *SAMPLES]
        ),
    ]
    lines = [
        "\t".join(["2L", str(pos), id_, ref, alt, "30", "PASS", f"DP={i}", "GT", *gts])
        for i, (pos, id_, ref, alt, gts) in enumerate(ROWS)
    ]
    return "\n".join(header + lines) + "\n"


def parse_counts(text: str, semantics: str) -> tuple[np.ndarray, np.ndarray]:
    """(missing, hom-ref, het) per variant and per sample, straight from the VCF text."""
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        calls = []
        for gt in line.split("\t")[9:]:
            a, b = (-1 if x == "." else int(x) for x in gt.replace("|", "/").split("/"))
            if semantics == "tutorial":  # on allele 0: (-1, 1) is missing and het
                calls.append((a < 0, a == 0 and b == 0, a != b))
            else:  # sgkit / scikit-allel: a partial call is missing, never het
                missing = a < 0 or b < 0
                calls.append((missing, a == 0 and b == 0, not missing and a != b))
        rows.append(calls)
    counts = np.array(rows, dtype=int)  # variants x samples x 3
    return counts.sum(axis=1), counts.sum(axis=0)


FIELDS = {"default": None, "all": "*"}


def write_store(tmp: Path, fields: str, kind: str) -> Path:
    vcf = tmp / "calls.vcf"
    vcf.write_text(vcf_text())
    options: dict[str, Any] = {"group": "2L", "chunk_length": 4, "chunk_width": 2}
    if FIELDS[fields] is not None:
        options["fields"] = FIELDS[fields]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "zip":
            path = tmp / "calls.zarr.zip"
            store = zarr.ZipStore(str(path), mode="w")
            allel.vcf_to_zarr(str(vcf), store, **options)
            store.close()
        else:
            path = tmp / "calls.zarr"
            allel.vcf_to_zarr(str(vcf), str(path), **options)
    return path


@pytest.fixture(scope="module", params=[(f, k) for f in FIELDS for k in ("dir", "zip")])
def real_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    fields, kind = request.param
    return write_store(tmp_path_factory.mktemp(f"allel-{fields}-{kind}"), fields, kind)


@pytest.fixture(scope="module", params=[("all", "dir"), ("default", "zip")])
def copy_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two of the layouts, for the commands that copy a store (the slower tests)."""
    fields, kind = request.param
    return write_store(tmp_path_factory.mktemp(f"copy-{fields}-{kind}"), fields, kind)


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, [*args])
    assert result.exit_code == 0, result.output
    return result


def stats(store: Path, *args: str, tmp: Path | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON of ``zarrgeno stats``, and per-variant counts from its --output TSV."""
    extra: list[str] = []
    if tmp is not None:
        extra = ["--output", str(tmp / "counts"), "--format", "tsv", "--overwrite"]
    result = run("stats", str(store), "--json", "--no-progress", *args, *extra)
    doc = json.loads(result.stdout)
    if tmp is None:
        return doc, np.empty(0)
    lines = (tmp / "counts" / "variants.tsv").read_text().splitlines()[1:]
    variants = np.array([[int(x) for x in line.split("\t")[3:6]] for line in lines])
    return doc, variants


def assert_counts(doc: dict[str, Any], variants: np.ndarray, semantics: str) -> None:
    want_variant, want_sample = parse_counts(vcf_text(), semantics)
    [contig] = doc["contigs"]
    assert contig["contig"] == "2L" and contig["total_pos"] == len(ROWS)
    assert [s["sample"] for s in contig["samples"]] == SAMPLES
    got_sample = [[s["n_missing"], s["n_hom_ref"], s["n_het"]] for s in contig["samples"]]
    assert got_sample == want_sample.tolist()
    assert [contig["n_missing"], contig["n_hom_ref"], contig["n_het"]] == want_sample.sum(
        axis=0
    ).tolist()
    assert contig["complete_data"] == int((want_variant[:, 0] == 0).sum())
    if variants.size:
        assert variants.tolist() == want_variant.tolist()


def test_the_partial_calls_tell_the_semantics_apart() -> None:
    """The corpus is worth testing both semantics on: they differ on it."""
    tutorial, sgkit = (parse_counts(vcf_text(), s)[0] for s in ("tutorial", "sgkit"))
    assert (tutorial != sgkit).any()


def test_allel_writes_strings_as_vlen_utf8_object_arrays(real_store: Path) -> None:
    meta = inspect_store(real_store).to_dict()
    by_path = {a["path"]: a for a in meta["arrays"]}
    for path in ("2L/samples", "2L/variants/ID", "2L/variants/REF", "2L/variants/ALT"):
        assert by_path[path]["dtype"] == "object"
        assert by_path[path]["filter_ids"] == ["vlen-utf8"]
        assert by_path[path]["filters"] == ["VLenUTF8()"]


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
def test_stats_equal_the_vcf_text(real_store: Path, semantics: str, tmp_path: Path) -> None:
    doc, variants = stats(real_store, "--semantics", semantics, tmp=tmp_path)
    assert_counts(doc, variants, semantics)


def test_samples_selected_by_name(real_store: Path) -> None:
    doc, _ = stats(real_store, "--samples", "BF-03,sample with space")
    _, want_sample = parse_counts(vcf_text(), "tutorial")
    got = [[s["n_missing"], s["n_hom_ref"], s["n_het"]] for s in doc["contigs"][0]["samples"]]
    assert [s["sample"] for s in doc["contigs"][0]["samples"]] == ["BF-03", "sample with space"]
    assert got == want_sample[[2, 4]].tolist()


def test_info_text_and_json_show_strings_as_zarr_does(real_store: Path) -> None:
    text = run("info", str(real_store)).stdout
    assert "samples (5,) object" in text
    assert "Filter [0]         : VLenUTF8()" in text
    assert "none +vlen-utf8" in text  # the summary's codec column of 2L/samples
    group = zarr.open_group(  # zarrgeno reads a .zip through its own read-only store
        ZipStore(real_store) if real_store.suffix == ".zip" else str(real_store), mode="r"
    )
    for a in inspect_store(real_store).arrays:
        ours = "\n".join(f"{k:<18} : {v}" for k, v in a.info_items())
        assert ours == repr(group[a.path].info).rstrip("\n")
    doc = json.loads(run("info", str(real_store), "2L/variants/ALT", "--json").stdout)
    [alt] = doc["arrays"]
    assert (alt["dtype"], alt["shape"], alt["filter_ids"]) == (
        "object",
        [len(ROWS), 3],
        ["vlen-utf8"],
    )


def _zarr_values(path: Path) -> dict[str, list[Any]]:
    store = zarr.ZipStore(str(path), mode="r") if path.suffix == ".zip" else str(path)
    group = zarr.open_group(store, mode="r")
    found: dict[str, list[Any]] = {}
    group.visititems(
        lambda name, obj: (
            found.__setitem__(name, obj[...].tolist()) if isinstance(obj, zarr.Array) else None
        )
    )
    return found


def test_rechunk_keeps_strings_and_counts(copy_store: Path, tmp_path: Path) -> None:
    target = tmp_path / "rechunked.zarr"
    run("rechunk", str(copy_store), str(target), "--chunks", "3,5,2", "--no-progress")
    run("verify", str(copy_store), str(target))
    assert _zarr_values(target) == _zarr_values(copy_store)
    assert json.loads((target / "2L" / "samples" / ".zarray").read_text())["filters"] == [
        {"id": "vlen-utf8"}
    ]
    assert_counts(*stats(target, tmp=tmp_path), "tutorial")


def test_rechunk_a_string_array(copy_store: Path, tmp_path: Path) -> None:
    target = tmp_path / "alt.zarr"
    run("rechunk", str(copy_store), str(target), "--chunks", "3,1", "--array", "2L/variants/ALT")
    meta = json.loads((target / "2L" / "variants" / "ALT" / ".zarray").read_text())
    assert meta["chunks"] == [3, 1] and meta["filters"] == [{"id": "vlen-utf8"}]
    assert _zarr_values(target) == _zarr_values(copy_store)
    run("verify", str(copy_store), str(target))
    run("verify", str(target))


def test_recompress_keeps_the_object_codec(copy_store: Path, tmp_path: Path) -> None:
    target = tmp_path / "zstd.zarr"
    strings = ["2L/samples", "2L/variants/ID", "2L/variants/REF", "2L/variants/ALT"]
    arrays = [x for path in [*strings, "2L/calldata/GT"] for x in ("--array", path)]
    run(
        "recompress",
        str(copy_store),
        str(target),
        "--compressor",
        "zstd:5",
        "--checksum",
        "crc32",
        *arrays,
        "--verify",
        "--no-progress",
    )
    for path in strings:
        meta = json.loads((target / path / ".zarray").read_text())
        assert meta["compressor"]["id"] == "zstd" and meta["compressor"]["level"] == 5
        assert meta["filters"] == [{"id": "vlen-utf8"}, {"id": "crc32"}]
    assert _zarr_values(target) == _zarr_values(copy_store)
    run("verify", str(copy_store), str(target))
    assert "all chunks read and decoded" in run("verify", str(target)).stdout
    assert_counts(*stats(target, "--semantics", "sgkit", tmp=tmp_path), "sgkit")


def test_verify_names_a_changed_string(copy_store: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.zarr"
    run("rechunk", str(copy_store), str(target), "--chunks", "4,2,2", "--no-progress")
    ids = zarr.open_array(str(target / "2L" / "variants" / "ID"), mode="r+")
    ids[5] = "rs-changed"
    result = CliRunner().invoke(app, ["verify", str(copy_store), str(target)])
    assert result.exit_code == 4, result.output
    assert "2L/variants/ID: contents differ in elements 4-8" in result.stderr
    assert "'rs6'" in result.stderr and "'rs-changed'" in result.stderr


def test_consolidate_then_every_command(copy_store: Path, tmp_path: Path) -> None:
    if copy_store.suffix == ".zip":
        result = CliRunner().invoke(app, ["consolidate", str(copy_store)])
        assert result.exit_code == 2 and "cannot be changed in place" in result.stderr
        return
    import shutil

    store = tmp_path / "consolidated.zarr"
    shutil.copytree(copy_store, store)
    run("consolidate", str(store))
    assert json.loads(run("info", str(store), "--json").stdout)["consolidated_agrees"] is True
    assert_counts(*stats(store, tmp=tmp_path), "tutorial")
    run("verify", str(copy_store), str(store))


def test_two_stage_rechunk_of_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget too small for one pass: strings go through rechunker's temporary array."""
    import numcodecs

    from zarrgeno.rewrite import arrayplan
    from zarrgeno.rewrite.execute import execute_store
    from zarrgeno.rewrite.storeplan import plan_store

    monkeypatch.setattr(arrayplan, "TASK_ALLOWANCE", 0)  # let a tiny budget plan two stages
    source = zarr.MemoryStore()
    values = np.array([[f"v{i}-{j}" for j in range(40)] for i in range(400)], dtype=object)
    zarr.open_group(source, mode="w").create_dataset(
        "alt", data=values, chunks=(400, 1), object_codec=numcodecs.VLenUTF8()
    )
    plan = plan_store(source, chunks="1,40", arrays=["alt"], max_mem="20KB", backend="sequential")
    assert plan.jobs[0].plan.intermediate_chunks is not None
    target = zarr.MemoryStore()
    execute_store(plan, target, verify=True)
    written = zarr.open_array(target, path="alt", mode="r")
    assert written.filters == [numcodecs.VLenUTF8()] and written.chunks == (1, 40)
    assert (written[...] == values).all()


def test_codecs_names_a_string_array(tmp_path: Path) -> None:
    store = write_store(tmp_path, "default", "dir")
    result = CliRunner().invoke(app, ["codecs", str(store), "--array", "2L/variants/ALT"])
    assert result.exit_code == 2
    assert "2L/variants/ALT is an object (string) array" in result.stderr


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A dask LocalCluster on 127.0.0.1 (one worker thread) for ``--scheduler``."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "semantics"), [("dir", "tutorial"), ("zip", "sgkit")])
def test_stats_on_every_backend(kind: str, semantics: str, scheduler: str, tmp_path: Path) -> None:
    store = write_store(tmp_path, "all", kind)
    runs = {
        "sequential": ["--backend", "sequential"],
        "multiprocessing": ["--backend", "multiprocessing", "--workers", "2"],
        "dask": ["--backend", "dask", "--workers", "2"],
        "distributed": ["--backend", "distributed", "--scheduler", scheduler],
    }
    for name, args in runs.items():
        doc, variants = stats(store, *args, "--semantics", semantics, tmp=tmp_path)
        assert doc["semantics"] == semantics and name in doc["backend"]
        assert_counts(doc, variants, semantics)


@pytest.mark.slow
def test_rechunk_on_a_cluster(scheduler: str, tmp_path: Path) -> None:
    store = write_store(tmp_path, "all", "dir")
    target = tmp_path / "cluster.zarr"
    alt = ["--array", "2L/variants/ALT", "--chunks", "5,-1"]
    run("rechunk", str(store), str(target), *alt, "--scheduler", scheduler, "--no-progress")
    assert _zarr_values(target) == _zarr_values(store)
    run("verify", str(store), str(target))


def test_download_mirrors_a_real_store(tmp_path: Path) -> None:
    from httpserver import StoreServer
    from test_download import FAST

    from zarrgeno.download.fetch import download

    (tmp_path / "srv").mkdir()
    store = write_store(tmp_path / "srv", "default", "dir")
    dest = tmp_path / "mirror.zarr"
    with StoreServer(store.parent) as server:
        report = download(server.url(store.name), dest, options=FAST)
    assert report.verified_chunks > 0  # each chunk was decoded: strings too
    assert _zarr_values(dest) == _zarr_values(store)
    run("verify", str(store), str(dest))
    assert_counts(*stats(dest, tmp=tmp_path), "tutorial")


def _vcf_zarr(path: Path) -> None:
    """The VCF Zarr layout as bio2zarr writes it: strings are vlen-utf8 object arrays."""
    import numcodecs

    root = zarr.open_group(str(path), mode="w")
    gt = np.array([[[0, 0], [0, 1], [-1, 1]]] * 4 + [[[1, 1], [-1, -1], [0, 0]]] * 3, "i1")
    root.create_dataset("call_genotype", data=gt, chunks=(3, 2, 2))
    root.create_dataset("variant_contig", data=np.array([0] * 4 + [1] * 3, "i1"), chunks=(3,))
    strings = {"contig_id": ["chr2L", "chrX"], "sample_id": ["s-a", "s-b", "s-c"]}
    for name, values in strings.items():
        root.create_dataset(
            name, data=np.array(values, dtype=object), object_codec=numcodecs.VLenUTF8()
        )


def test_vcf_zarr_strings_name_contigs_and_samples(tmp_path: Path) -> None:
    path = tmp_path / "vcf.vcz"
    _vcf_zarr(path)
    doc, _ = stats(path, "--semantics", "sgkit")
    assert [c["contig"] for c in doc["contigs"]] == ["chr2L", "chrX"]
    assert [s["sample"] for s in doc["contigs"][0]["samples"]] == ["s-a", "s-b", "s-c"]
    assert [s["n_missing"] for s in doc["contigs"][0]["samples"]] == [0, 0, 4]


@pytest.mark.hostile
def test_crafted_contig_id_chunk_is_named(tmp_path: Path) -> None:
    path = tmp_path / "vcf.vcz"
    _vcf_zarr(path)
    compressor = zarr.open_array(str(path / "contig_id"), mode="r").compressor  # zarr's Blosc
    (path / "contig_id" / "0").write_bytes(compressor.encode((2**30).to_bytes(4, "little")))
    result = CliRunner().invoke(app, ["stats", str(path)])
    assert result.exit_code == 4, result.output
    assert result.stderr.startswith("Error: chunk contig_id/0: vlen header says 1073741824 items")


@pytest.mark.hostile
def test_a_crafted_string_chunk_is_named_by_every_command_that_decodes_it(tmp_path: Path) -> None:
    store = write_store(tmp_path, "default", "dir")
    clean = tmp_path / "clean.zarr"
    run("rechunk", str(store), str(clean), "--chunks", "5,5,2", "--no-progress")
    ids = zarr.open_array(str(store / "2L" / "variants" / "ID"), mode="r")
    crafted = (4).to_bytes(4, "little") + (2**31 - 1).to_bytes(4, "little") + b"rs1"
    (store / "2L" / "variants" / "ID" / "1").write_bytes(ids.compressor.encode(crafted))
    reason = "chunk 2L/variants/ID/1: vlen item 0 has length 2147483647, past the end"
    commands = [
        ["verify", str(store)],
        ["verify", str(store), str(clean)],
        [
            "rechunk",
            str(store),
            str(tmp_path / "r.zarr"),
            "--chunks",
            "2",
            "--array",
            "2L/variants/ID",
        ],
        [
            "recompress",
            str(store),
            str(tmp_path / "c.zarr"),
            "--compressor",
            "zstd",
            "--array",
            "2L/variants/ID",
        ],
    ]
    for args in commands:
        result = CliRunner().invoke(app, [*args, "--no-progress"] if args[0] != "verify" else args)
        assert result.exit_code == 4, (args, result.output)
        assert reason in result.stderr and "Traceback" not in result.output, args
    assert not (tmp_path / "r.zarr").exists() and not (tmp_path / "c.zarr").exists()


def test_allel_default_chunks(tmp_path: Path) -> None:
    """allel's default chunks (65536 variants x 64 samples) are larger than a small store."""
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(vcf_text())
    store = tmp_path / "calls.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        allel.vcf_to_zarr(str(vcf), str(store), group="2L", fields="*")
    assert zarr.open_array(str(store / "2L" / "calldata" / "GT"), mode="r").chunks[0] == 65536
    assert "samples (5,) object" in run("info", str(store)).stdout
    assert_counts(*stats(store, tmp=tmp_path), "tutorial")
    run("verify", str(store))
    target = tmp_path / "rechunked.zarr"
    run("rechunk", str(store), str(target), "--chunks", "4,2,2", "--no-progress")
    run("verify", str(store), str(target))
