"""The public API resolves, and the docs' Python example prints what docs/index.md says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import zarrgeno

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("name", sorted(zarrgeno._API))
def test_every_public_name_resolves(name: str) -> None:
    module, attribute = zarrgeno._API[name]
    value = getattr(zarrgeno, name)
    assert callable(value)
    assert value is getattr(__import__(module, fromlist=[attribute]), attribute)


def test_errors_are_exported_with_their_exit_codes() -> None:
    from zarrgeno.errors import ZarrgenoError

    for name in [
        "UsageError",
        "MissingInputError",
        "BadDataError",
        "TargetExistsError",
        "StoreIOError",
        "ClusterError",
    ]:
        error = getattr(zarrgeno, name)
        assert issubclass(error, ZarrgenoError) and error.exit_code in set(zarrgeno.ExitCode), name


def test_package_is_typed() -> None:
    assert (Path(zarrgeno.__file__).parent / "py.typed").is_file()


def test_one_shot_rechunk_refuses_an_existing_target_and_keeps_it() -> None:
    import zarr

    source = zarr.MemoryStore()
    zarrgeno.simulate_store(source, contigs=["X"], scale=0.0005, seed=3)
    target = zarr.MemoryStore()
    zarrgeno.rechunk(source, target, chunks="-1,81,2", max_mem="200MB")
    before = dict(target)
    with pytest.raises(zarrgeno.TargetExistsError, match="not empty"):
        zarrgeno.rechunk(source, target, chunks="1000,81,2", max_mem="200MB")
    assert dict(target) == before
    result = zarrgeno.rechunk(source, target, chunks="1000,81,2", max_mem="200MB", overwrite=True)
    assert zarr.open_group(target, mode="r")["X/calldata/GT"].chunks[0] == 1000
    assert isinstance(result, zarrgeno.CopyResult)


def test_unknown_name() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        zarrgeno.nope  # noqa: B018


def test_index_example_output() -> None:
    text = (DOCS / "index.md").read_text()
    code, printed = re.search(
        r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", text, re.S
    ).groups()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == printed


def test_every_command_has_a_page_and_an_example() -> None:
    from typer.testing import CliRunner

    from zarrgeno.cli import app

    index = (DOCS / "index.md").read_text()
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert names
    for name in names:
        assert f"`zarrgeno {name}" in index, name
        helptext = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert helptext.exit_code == 0 and "Example" in helptext.stdout, name


@pytest.mark.hostile
def test_console_usage_errors_are_one_line() -> None:
    for args, needle in [
        (["stats", "--backend", "foo"], "'foo' is not one of"),
        (["simulate", "x", "--scale", "abc"], "Invalid value for '--scale'"),
        (["info", "--bogus"], "No such option: --bogus"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "zarrgeno", *args], capture_output=True, text=True
        )
        assert result.returncode == 2, args
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: "), args
        assert needle in result.stderr and "--help')" in result.stderr


def test_plan_rechunk_takes_a_codec_spec_string() -> None:
    """A spec string given to the plan-first API is parsed (it used to fail in get_config)."""
    import zarr

    source = zarr.MemoryStore()
    zarrgeno.simulate_store(source, contigs=["X"], scale=0.0005, seed=3)
    plan = zarrgeno.plan_rechunk(source, chunks="-1,81,2", compressor="zstd:5", max_mem="200MB")
    assert plan.jobs[0].compressor["id"] == "zstd" and plan.jobs[0].compressor["level"] == 5
