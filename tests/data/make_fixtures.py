"""Make the committed fixture stores with the real tools (see README.md beside this file).

Not run by the test suite: the tools need zarr 3 (bio2zarr) or an older numpy (sgkit), so
each part runs in its own virtualenv outside the project:

    python make_fixtures.py bio2zarr   # bio2zarr 0.2.1 venv: *.vcf -> VCF Zarr, format 2 and 3
    python make_fixtures.py wide       # same venv: wide_alleles.vcf -> VCF Zarr with int16 GT
    python make_fixtures.py zarr3      # same venv (zarr-python 3): MalariaGEN layout, format 3
    python make_fixtures.py s24        # zarr-python 3: |S24 sample names, format 3 and format 2
    python make_fixtures.py sgkit      # sgkit 0.10 venv: simulated datasets, format 2

Every store is rewritten from scratch; the output is deterministic apart from zarr's
own metadata ordering.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIDE_VCF = HERE / "wide_alleles.vcf"
#: Small chunks so that contigs, edge chunks and chunk boundaries all occur in 11 x 6 calls.
VARIANTS_CHUNK, SAMPLES_CHUNK = 4, 4
#: (VCF beside this file, store, extra vcf2zarr options): small.vcf in both formats, and
#: the empty cases: a VCF with no records, and one with records but no samples.
BIO2ZARR = (
    ("small.vcf", "bio2zarr_v2.vcz", []),
    ("small.vcf", "bio2zarr_v3.vcz", ["--zarr-format", "3"]),
    ("no_variants.vcf", "bio2zarr_no_variants.vcz", []),
    ("no_variants.vcf", "bio2zarr_no_variants_v3.vcz", ["--zarr-format", "3"]),
    ("no_samples.vcf", "bio2zarr_no_samples.vcz", []),
)


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def _vcf2zarr(vcf: Path, outputs: dict[str, list[str]]) -> None:
    """``vcf2zarr convert`` of ``vcf`` (bgzipped and indexed in a temporary directory) to
    each output store name, with its extra options."""
    import pysam

    with tempfile.TemporaryDirectory() as tmp:
        gz = Path(tmp) / f"{vcf.name}.gz"
        pysam.tabix_compress(str(vcf), str(gz), force=True)
        pysam.tabix_index(str(gz), preset="vcf", force=True)
        vcf2zarr = Path(sys.executable).parent / "vcf2zarr"
        for name, extra in outputs.items():
            out = _fresh(HERE / name)
            subprocess.run(
                [
                    str(vcf2zarr),
                    "convert",
                    "--no-progress",
                    "-l",
                    str(VARIANTS_CHUNK),
                    "-w",
                    str(SAMPLES_CHUNK),
                    *extra,
                    str(gz),
                    str(out),
                ],
                check=True,
            )


def make_bio2zarr() -> None:
    """``vcf2zarr convert`` of each VCF of :data:`BIO2ZARR` (default format, or 3)."""
    for vcf in dict.fromkeys(v for v, _, _ in BIO2ZARR):
        _vcf2zarr(HERE / vcf, {name: extra for v, name, extra in BIO2ZARR if v == vcf})


def make_wide() -> None:
    """wide_alleles.vcf (sites with 130 to 300 ALT alleles, so bio2zarr writes
    ``call_genotype`` as int16), then its VCF Zarr in bio2zarr's default format."""
    import itertools

    alts = ["T" + "".join(p) for p in itertools.product("ACGT", repeat=5)][:300]
    rows = [
        ("2L", 10, "A", ["T"], "0/0 0/1 1/1 ./. 0|1"),
        ("2L", 20, "C", alts, "0/300 128/128 ./129 255/256 0/0"),
        ("2L", 30, "G", alts[:130], "127/128 0/1 130/0 ./. 1/130"),
        ("2L", 40, "T", ["C"], "0/0 0/0 0/0 0/0 ./."),
        ("X", 5, "A", alts[:200], "0 200 0/200 ./. ."),
        ("X", 15, "G", ["C"], "0/1 1 ./. 0/0 1/1"),
    ]
    lines = [
        "##fileformat=VCFv4.3",
        "##contig=<ID=2L,length=1000>",
        "##contig=<ID=X,length=1000>",
        '##FILTER=<ID=PASS,Description="All filters passed">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
        + "\tS1\tS2\tS3\tS4\tS5",
    ]
    for chrom, pos, ref, alt, calls in rows:
        fields = [chrom, str(pos), ".", ref, ",".join(alt), ".", "PASS", ".", "GT"]
        lines.append("\t".join(fields + calls.split()))
    WIDE_VCF.write_text("\n".join(lines) + "\n")
    _vcf2zarr(WIDE_VCF, {"bio2zarr_int16.vcz": []})


def make_zarr3() -> None:
    """zarr-python 3 stores in the MalariaGEN layout: one plain, one with a sharded GT."""
    import numpy as np
    import zarr
    from zarr.codecs import BloscCodec, ZstdCodec

    rng = np.random.default_rng(14)
    n_samples = 5
    samples = np.array([f"AB{i:04d}" for i in range(n_samples)], dtype=np.dtypes.StringDType())
    contigs = {
        "2L": (23, BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")),
        "3R": (17, ZstdCodec(level=3)),
    }

    def genotypes(n: int) -> np.ndarray:
        gt = rng.choice(
            np.array([0, 1, -1], dtype=np.int8), size=(n, n_samples, 2), p=[0.6, 0.3, 0.1]
        )
        gt[3] = -1  # one all-missing variant per contig
        return gt

    for name, shards in (("malariagen_v3.zarr", None), ("malariagen_v3_sharded.zarr", True)):
        root = zarr.open_group(str(_fresh(HERE / name)), mode="w", zarr_format=3)
        root.attrs["note"] = "zarrgeno test fixture (tests/data/make_fixtures.py)"
        root.create_array("samples", data=samples, chunks=(n_samples,))
        for contig, (n, codec) in contigs.items():
            gt = genotypes(n)
            kwargs = {"shards": (16, 6, 2)} if shards else {}
            arr = root.create_array(
                f"{contig}/calldata/GT",
                shape=gt.shape,
                dtype="int8",
                chunks=(8, 3, 2),
                compressors=[codec],
                fill_value=-1,
                **kwargs,
            )
            arr[:] = gt
            pos = root.create_array(
                f"{contig}/variants/POS",
                shape=(n,),
                dtype="int32",
                chunks=(8,),
                compressors=[ZstdCodec(level=1)],
            )
            pos[:] = np.arange(1, n + 1, dtype=np.int32) * 100
        if not shards:
            with warnings.catch_warnings():  # "not part of the Zarr format 3 specification"
                warnings.simplefilter("ignore")
                zarr.consolidate_metadata(str(HERE / name))


def make_s24() -> None:
    """zarr-python 3 stores with MalariaGEN's ``|S24`` sample names: format 3 (the names as
    ``null_terminated_bytes``; an int16 contig with alleles past 127), and format 2 with
    consolidated metadata (zarr 3 adds ``consolidated_metadata`` to each subgroup's entry)."""
    import numpy as np
    import zarr
    from zarr.codecs import BloscCodec

    rng = np.random.default_rng(24)
    # one name of exactly 24 bytes: null_terminated_bytes then stores no terminator
    names = [f"AR{i:04d}-C" for i in range(5)] + ["AR0005-CW-LONGEST-NAME24"]
    samples = np.array(names, dtype="|S24")
    assert len(names[-1]) == 24 and samples.dtype == np.dtype("|S24")
    alleles = {"int8": [0, 0, 0, 1, -1], "int16": [0, 0, 1, 128, 300, -1, -2]}
    contigs = {"2L": ("int8", 23), "3R": ("int8", 9), "X": ("int16", 14)}
    calls = {
        contig: rng.choice(np.array(alleles[dtype], dtype=dtype), size=(n, len(names), 2))
        for contig, (dtype, n) in contigs.items()
    }
    for name, zarr_format in (("malariagen_v3_s24.zarr", 3), ("malariagen_v2_zarr3.zarr", 2)):
        path = str(_fresh(HERE / name))
        root = zarr.open_group(path, mode="w", zarr_format=zarr_format)
        root.attrs["note"] = "zarrgeno test fixture (tests/data/make_fixtures.py)"
        with warnings.catch_warnings():  # "null_terminated_bytes ... not part of the spec"
            warnings.simplefilter("ignore")
            root.create_array("samples", data=samples, chunks=(4,))
        for contig, gt in calls.items():
            arr = root.create_array(
                f"{contig}/calldata/GT",
                shape=gt.shape,
                dtype=gt.dtype,
                chunks=(8, 4, 2),
                compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
                if zarr_format == 3
                else "auto",
                fill_value=-1,
            )
            arr[:] = gt
        with warnings.catch_warnings():  # "not part of the Zarr format 3 specification"
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(path)


def make_sgkit() -> None:
    """sgkit's simulated dataset written with ``to_zarr``: plain, and ploidy chunked by 1."""
    import sgkit

    ds = sgkit.simulate_genotype_call_dataset(
        n_variant=60, n_sample=41, n_contig=2, seed=10, missing_pct=0.1
    )
    ds.to_zarr(str(_fresh(HERE / "sgkit_plain.zarr")))
    chunked = ds.chunk({"variants": 25, "samples": 41, "ploidy": 1, "alleles": 1})
    chunked.to_zarr(str(_fresh(HERE / "sgkit_ploidy1.zarr")))


PARTS = {
    "bio2zarr": make_bio2zarr,
    "wide": make_wide,
    "zarr3": make_zarr3,
    "s24": make_s24,
    "sgkit": make_sgkit,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PARTS:
        sys.exit(f"usage: python {Path(__file__).name} {{{'|'.join(PARTS)}}}")
    PARTS[sys.argv[1]]()
