"""Make the committed fixture stores with the real tools (see README.md beside this file).

Not run by the test suite: the tools need zarr 3 (bio2zarr) or an older numpy (sgkit), so
each part runs in its own virtualenv outside the project:

    python make_fixtures.py bio2zarr   # bio2zarr 0.2.1 venv: *.vcf -> VCF Zarr, format 2 and 3
    python make_fixtures.py zarr3      # same venv (zarr-python 3): MalariaGEN layout, format 3
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
#: Small chunks so that contigs, edge chunks and chunk boundaries all occur in 11 x 6 calls.
VARIANTS_CHUNK, SAMPLES_CHUNK = 4, 4


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


#: (VCF beside this file, store, extra vcf2zarr options): small.vcf in both formats, and
#: the empty cases: a VCF with no records, and one with records but no samples.
BIO2ZARR = (
    ("small.vcf", "bio2zarr_v2.vcz", []),
    ("small.vcf", "bio2zarr_v3.vcz", ["--zarr-format", "3"]),
    ("no_variants.vcf", "bio2zarr_no_variants.vcz", []),
    ("no_variants.vcf", "bio2zarr_no_variants_v3.vcz", ["--zarr-format", "3"]),
    ("no_samples.vcf", "bio2zarr_no_samples.vcz", []),
)


def make_bio2zarr() -> None:
    """``vcf2zarr convert`` of each VCF of :data:`BIO2ZARR` (default format, or 3)."""
    import pysam

    with tempfile.TemporaryDirectory() as tmp:
        vcf2zarr = Path(sys.executable).parent / "vcf2zarr"
        for vcf, name, extra in BIO2ZARR:
            gz = Path(tmp) / f"{vcf}.gz"
            if not gz.exists():  # vcf2zarr needs a bgzipped, indexed VCF
                pysam.tabix_compress(str(HERE / vcf), str(gz), force=True)
                pysam.tabix_index(str(gz), preset="vcf", force=True)
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


def make_sgkit() -> None:
    """sgkit's simulated dataset written with ``to_zarr``: plain, and ploidy chunked by 1."""
    import sgkit

    ds = sgkit.simulate_genotype_call_dataset(
        n_variant=60, n_sample=41, n_contig=2, seed=10, missing_pct=0.1
    )
    ds.to_zarr(str(_fresh(HERE / "sgkit_plain.zarr")))
    chunked = ds.chunk({"variants": 25, "samples": 41, "ploidy": 1, "alleles": 1})
    chunked.to_zarr(str(_fresh(HERE / "sgkit_ploidy1.zarr")))


PARTS = {"bio2zarr": make_bio2zarr, "zarr3": make_zarr3, "sgkit": make_sgkit}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PARTS:
        sys.exit(f"usage: python {Path(__file__).name} {{{'|'.join(PARTS)}}}")
    PARTS[sys.argv[1]]()
