"""The Zarr format 3 oracles: zarr-python 3, vcf2zarr (bio2zarr) and vcztools, in their own venv.

They need zarr>=3.1 and zarrgeno runs on zarr 2.18, so ``make zarr3-venv`` (run by ``make
test``, see .ci/zarr3-venv) builds them a venv. Tests find its interpreter in
``$ZARRGENO_ZARR3_PYTHON`` (``make test`` sets it), else at ``.venv-zarr3/bin/python`` of the
checkout; without either, the tests marked :data:`needs_zarr3` are skipped. A named
interpreter that does not exist is an error, not a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ENV = "ZARRGENO_ZARR3_PYTHON"
DEFAULT = Path(__file__).resolve().parent.parent / ".venv-zarr3" / "bin" / "python"
#: Generous: the first import of zarr and pandas in a fresh venv takes a few seconds.
TIMEOUT = 120


def oracle_python() -> Path | None:
    """The oracle venv's interpreter, or None when it is not built (and not named)."""
    named = os.environ.get(ENV)
    if named:
        return Path(named)
    return DEFAULT if DEFAULT.exists() else None


needs_zarr3 = pytest.mark.skipif(
    oracle_python() is None,
    reason=f"the zarr 3 oracle venv is not built (make zarr3-venv, or set {ENV})",
)


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _python() -> Path:
    python = oracle_python()
    if python is None:
        pytest.skip(f"the zarr 3 oracle venv is not built (make zarr3-venv, or set {ENV})")
    if not python.exists():
        raise FileNotFoundError(f"{ENV}={python} does not exist: run make zarr3-venv")
    return python


def run_python(code: str, *args: str | os.PathLike[str], timeout: float = TIMEOUT) -> str:
    """Run ``code`` (``sys.argv[1:]`` = ``args``) in the oracle venv; its stdout. A failure
    fails the test with the snippet's stderr."""
    result = _run([str(_python()), "-c", code, *map(os.fspath, args)], timeout)
    if result.returncode != 0:
        pytest.fail(f"zarr 3 oracle snippet failed (exit {result.returncode}):\n{result.stderr}")
    return result.stdout


def run_json(code: str, *args: str | os.PathLike[str], timeout: float = TIMEOUT) -> Any:
    """Run ``code`` in the oracle venv and parse the JSON it prints last."""
    out = run_python(code, *args, timeout=timeout).strip().splitlines()
    return json.loads(out[-1]) if out else None


def run_tool(
    name: str, *args: str | os.PathLike[str], timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run the oracle venv's command ``name`` (``vcztools``, ``vcf2zarr``) to the end; the
    caller checks the exit code and output."""
    tool = _python().parent / name
    return _run([str(tool), *map(os.fspath, args)], timeout)


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
