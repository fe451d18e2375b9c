"""The Zarr format 3 oracles: zarr-python 3, vcf2zarr (bio2zarr) and vcztools, in their own venv.

They need zarr>=3.1 and zarrgeno runs on zarr 2.18, so ``make zarr3-venv`` (run by ``make
test``, see .ci/oracle-venv) builds them a venv from .ci/zarr3-requirements.txt. Tests find
its interpreter in ``$ZARRGENO_ZARR3_PYTHON`` (``make test`` sets it), else at
``.venv-zarr3/bin/python`` of the checkout; without either, the tests marked
:data:`needs_zarr3` are skipped (tests/oraclevenv.py).
"""

from __future__ import annotations

import json
import os

import pytest
from oraclevenv import OracleVenv

ZARR3 = OracleVenv("the zarr 3 oracle venv", "ZARRGENO_ZARR3_PYTHON", ".venv-zarr3", "zarr3-venv")
needs_zarr3 = ZARR3.needs
run_python = ZARR3.run_python
run_json = ZARR3.run_json
run_tool = ZARR3.run_tool

VCZTOOLS_VIEWS = """
import json, sys, tempfile, pathlib
from vcztools.cli import vcztools_main
out = []
with tempfile.TemporaryDirectory() as tmp:
    for i, args in enumerate(json.loads(sys.argv[1])):
        path = pathlib.Path(tmp) / f"{i}.vcf"
        try:
            vcztools_main(["view", "--no-version", "-o", str(path), *args], standalone_mode=False)
        except Exception as exc:
            out.append({"error": f"{type(exc).__name__}: {exc}"})
            continue
        out.append({"vcf": path.read_text()})
print(json.dumps(out))
"""


def vcztools_views(*argvs: list[str | os.PathLike[str]]) -> list[str]:
    """The VCF text of ``vcztools view --no-version ARGV`` for each argv, all in one process
    of the oracle venv (vcztools takes a second to import); an error fails the test."""
    plain = [[os.fspath(a) for a in argv] for argv in argvs]
    results = run_json(VCZTOOLS_VIEWS, json.dumps(plain))
    for argv, result in zip(plain, results, strict=True):
        if "error" in result:
            pytest.fail(f"vcztools view {' '.join(argv)}: {result['error']}")
    return [r["vcf"] for r in results]
