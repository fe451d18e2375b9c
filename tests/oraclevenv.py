"""Oracle venvs: reference tools whose dependencies zarrgeno's own venv cannot hold.

Each is built by a make target (run by ``make test``, see .ci/oracle-venv) from a pinned
``.ci/NAME-requirements.txt``; tests find its interpreter in an environment variable
(``make test`` sets it), else in the venv's directory in the checkout; without either, the
tests marked with :attr:`OracleVenv.needs` are skipped. A named interpreter that does not
exist is an error, not a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Generous: the first import of zarr and pandas in a fresh venv takes a few seconds.
TIMEOUT = 120


@dataclass(frozen=True)
class OracleVenv:
    """One oracle venv: ``title`` in messages, ``env`` naming its interpreter, ``directory``
    (in the checkout) and the ``make`` target that builds it."""

    title: str
    env: str
    directory: str
    target: str

    def python(self) -> Path | None:
        """The venv's interpreter, or None when it is not built (and not named)."""
        named = os.environ.get(self.env)
        if named:
            return Path(named)
        default = ROOT / self.directory / "bin" / "python"
        return default if default.exists() else None

    @property
    def reason(self) -> str:
        return f"{self.title} is not built (make {self.target}, or set {self.env})"

    @property
    def needs(self) -> pytest.MarkDecorator:
        """Skip the marked test when the venv is not built."""
        return pytest.mark.skipif(self.python() is None, reason=self.reason)

    def interpreter(self) -> Path:
        """The venv's interpreter; the test is skipped when it is not built."""
        python = self.python()
        if python is None:
            pytest.skip(self.reason)
        if not python.exists():
            raise FileNotFoundError(f"{self.env}={python} does not exist: run make {self.target}")
        return python

    def run(
        self, argv: list[str], timeout: float = TIMEOUT, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (its first item a path in the venv) to the end, outside this venv."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=base | (env or {}),
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def run_python(
        self,
        code: str,
        *args: str | os.PathLike[str],
        timeout: float = TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run ``code`` (``sys.argv[1:]`` = ``args``) in the venv; its stdout. A failure
        fails the test with the snippet's stderr."""
        return self.run_script("-c", code, *args, timeout=timeout, env=env)

    def run_script(
        self,
        *argv: str | os.PathLike[str],
        timeout: float = TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run the venv's ``python ARGV`` (a script and its arguments); its stdout. A
        failure fails the test with its stderr."""
        result = self.run([str(self.interpreter()), *map(os.fspath, argv)], timeout, env)
        if result.returncode != 0:
            what = "snippet" if argv[0] == "-c" else f"python {os.fspath(argv[0])}"
            pytest.fail(f"{self.title}: {what} failed (exit {result.returncode}):\n{result.stderr}")
        return result.stdout

    def run_json(self, code: str, *args: str | os.PathLike[str], timeout: float = TIMEOUT) -> Any:
        """Run ``code`` in the venv and parse the JSON it prints last."""
        out = self.run_python(code, *args, timeout=timeout).strip().splitlines()
        return json.loads(out[-1]) if out else None

    def run_tool(
        self, name: str, *args: str | os.PathLike[str], timeout: float = TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run the venv's command ``name`` to the end; the caller checks the exit code and
        output."""
        tool = self.interpreter().parent / name
        return self.run([str(tool), *map(os.fspath, args)], timeout)
