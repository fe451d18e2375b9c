"""``tls://`` schedulers: a real ``dask scheduler --protocol tls`` and ``dask worker`` started
here on 127.0.0.1 with certificates from a throw-away CA, reached through the CLI's
``--tls-*`` options, ``security=`` and dask's own configuration; and every way of getting
TLS wrong, each a one-line error with its exit code."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_backends_distributed import dask_cluster
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app
from zarrgeno.errors import BadDataError, ClusterError, UsageError
from zarrgeno.rewrite.recompress import plan_recompress
from zarrgeno.runtime.cluster import check_security, dask_client, tls_security
from zarrgeno.stats.api import genotype_stats

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

#: dask's TLS configuration keys for a client, cleared where a test needs "nothing set".
TLS_CONFIG = ("ca-file", "client.cert", "client.key")


# ---------------------------------------------------------------------------------------
# A throw-away public key infrastructure.
# ---------------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(directory: Path, name: str, leaves: tuple[str, ...]) -> dict[str, Path]:
    """A CA certificate ``{name}-ca.pem`` and, per leaf, a certificate it signs and its key
    in separate PEM files: ``{name}-{leaf}.pem`` and ``{name}-{leaf}-key.pem``."""
    now = datetime.datetime.now(datetime.UTC)
    valid = {"not_valid_before": now - datetime.timedelta(hours=1)}
    valid["not_valid_after"] = now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(subject_name=_name(f"{name} CA"), issuer_name=_name(f"{name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / f"{name}-ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for leaf in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder(subject_name=_name(f"{name} {leaf}"), issuer_name=ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"])
            .not_valid_after(valid["not_valid_after"])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        files[leaf] = directory / f"{name}-{leaf}.pem"
        files[leaf].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{leaf}-key"] = directory / f"{name}-{leaf}-key.pem"
        files[f"{leaf}-key"].write_bytes(_pem_key(key))
    return files


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The cluster's CA with a certificate for the scheduler and workers and one for the
    client (``ca``, ``cluster``, ``client`` and their ``-key`` files), plus another CA's
    client certificate (``rogue-*``) that the cluster does not trust."""
    directory = tmp_path_factory.mktemp("pki")
    files = make_ca(directory, "good", ("cluster", "client"))
    rogue = make_ca(directory, "rogue", ("client",))
    files.update({f"rogue-{k}": v for k, v in rogue.items()})
    return files


def tls_args(ca: Path, cert: Path, key: Path) -> list[str]:
    """The --tls-* options, the same for `dask scheduler`, `dask worker` and zarrgeno."""
    return ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]


def client_args(pki: dict[str, Path], prefix: str = "") -> list[str]:
    return tls_args(pki[f"{prefix}ca"], pki[f"{prefix}client"], pki[f"{prefix}client-key"])


def client_security(pki: dict[str, Path]) -> Any:
    from distributed import Security

    return Security(
        tls_ca_file=str(pki["ca"]),
        tls_client_cert=str(pki["client"]),
        tls_client_key=str(pki["client-key"]),
    )


@pytest.fixture(scope="module")
def tls_scheduler(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A TLS-only cluster, one worker process, shared by the module; yields tls://..."""
    cluster_tls = tls_args(pki["ca"], pki["cluster"], pki["cluster-key"])
    with dask_cluster(
        tmp_path_factory.mktemp("tls-cluster"),
        nworkers=1,
        scheduler_args=["--protocol", "tls", *cluster_tls],
        worker_args=cluster_tls,
        security=client_security(pki),
    ) as address:
        assert address.startswith("tls://127.0.0.1:")
        yield address


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The conftest store on disk and the sequential backend's JSON for it."""
    path = tmp_path_factory.mktemp("tls-store") / "store.zarr"
    build_store(str(path))
    return path, counts(genotype_stats(str(path), backend="sequential").to_dict())


def counts(result: dict[str, Any]) -> dict[str, Any]:
    """A stats JSON without what differs between backends and runs."""
    return {k: v for k, v in result.items() if k not in ("backend", "elapsed_seconds")}


@pytest.fixture
def no_tls_config() -> Iterator[None]:
    """dask's configuration without client TLS files, whatever the environment says."""
    with dask.config.set({f"distributed.comm.tls.{k}": None for k in TLS_CONFIG}):
        yield


def run(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


# ---------------------------------------------------------------------------------------
# Working TLS: the CLI options, security=, dask's configuration, rechunk's copies.
# ---------------------------------------------------------------------------------------


def test_stats_cli_over_tls_equals_the_sequential_backend(tls_scheduler, pki, store) -> None:
    path, expected = store
    code, out, err = run(
        "stats",
        path,
        "-b",
        "distributed",
        "--scheduler",
        tls_scheduler,
        *client_args(pki),
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert counts(result) == expected
    assert f"1 worker at {tls_scheduler}" in result["backend"]
    assert f"dask scheduler {tls_scheduler}" in err


def test_stats_library_over_tls_with_security(tls_scheduler, pki, store) -> None:
    path, expected = store
    result = genotype_stats(
        str(path),
        backend="distributed",
        scheduler=tls_scheduler,
        security=client_security(pki),
        persist=True,
    )
    assert counts(result.to_dict()) == expected


def test_dask_configuration_is_the_default(tls_scheduler, pki, store) -> None:
    """No --tls-* option: `distributed.Security()` reads DASK_DISTRIBUTED__COMM__TLS__*,
    as for any dask client (a fresh process, so dask reads the environment as users set it)."""
    path, expected = store
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env.update(
        DASK_DISTRIBUTED__COMM__TLS__CA_FILE=str(pki["ca"]),
        DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=str(pki["client"]),
        DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=str(pki["client-key"]),
    )
    zarrgeno = Path(sys.executable).parent / "zarrgeno"
    proc = subprocess.run(
        [zarrgeno, "stats", path, "-b", "distributed", "--scheduler", tls_scheduler, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert counts(json.loads(proc.stdout)) == expected


def test_recompress_over_tls(tls_scheduler, pki, store, tmp_path: Path) -> None:
    path, _ = store
    target = tmp_path / "zstd.zarr"
    code, out, err = run(
        "recompress",
        path,
        target,
        "--compressor",
        "zstd:1",
        "--scheduler",
        tls_scheduler,
        *client_args(pki),
        "--verify",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["verified"] is True
    code, out, err = run("stats", target, "-b", "sequential", "--json")
    assert code == 0 and counts(json.loads(out)) == store[1] | {"store": str(target)}


def test_a_local_cluster_stays_on_loopback_without_tls() -> None:
    with dask_client(n_workers=1) as client:
        info = client.scheduler_info()
        addresses = [client.scheduler.address, *info["workers"]]
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses


# ---------------------------------------------------------------------------------------
# Misconfigured: usage errors (2), missing files (3), unloadable files (4), cluster (7).
# ---------------------------------------------------------------------------------------


@pytest.mark.hostile
def test_tls_scheduler_without_certificates_says_what_to_set(no_tls_config, store) -> None:
    path, _ = store
    code, out, err = run("stats", path, "-b", "distributed", "--scheduler", "tls://127.0.0.1:1")
    assert code == 2 and out == ""
    assert "tls://127.0.0.1:1 is a TLS scheduler but no --tls-ca-file or --tls-cert is set" in err
    for setting in ("--tls-key", "distributed.comm.tls.ca-file", "DASK_DISTRIBUTED__COMM__TLS"):
        assert setting in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.hostile
@pytest.mark.parametrize("command", ["stats", "rechunk", "recompress"])
@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        (None, "--tls-cert applies to a running tls:// --scheduler; without --scheduler"),
        ("tcp://127.0.0.1:8786", "--tls-cert applies to tls:// scheduler addresses, not tcp://"),
        ("127.0.0.1:8786", "--tls-cert applies to tls:// scheduler addresses, not tcp://"),
    ],
)
def test_tls_options_need_a_tls_scheduler(
    store, pki, tmp_path: Path, command: str, scheduler: str | None, message: str
) -> None:
    path, _ = store
    args: list[str | Path] = [command, path]
    args += {
        "stats": ["-b", "distributed"],
        "rechunk": [tmp_path / "t", "--chunks", "100,7,2"],
    }.get(command, [tmp_path / "t", "--compressor", "zstd:1"])
    if scheduler is not None:
        args += ["--scheduler", scheduler]
    code, out, err = run(*args, "--tls-cert", pki["client"])
    assert code == 2, err
    assert message in err and out == ""
    assert not (tmp_path / "t").exists()


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("missing", "option", "what"),
    [
        ("client", "--tls-cert", "certificate"),
        ("client-key", "--tls-key", "key"),
        ("ca", "--tls-ca-file", "CA file"),
    ],
)
def test_a_missing_tls_file_is_missing_input(
    store, pki, tmp_path: Path, missing: str, option: str, what: str
) -> None:
    path, _ = store
    files = {k: pki[k] for k in ("ca", "client", "client-key")}
    files[missing] = tmp_path / f"no-{missing}.pem"
    code, out, err = run(
        "stats",
        path,
        "-b",
        "distributed",
        "--scheduler",
        "tls://127.0.0.1:1",
        *tls_args(files["ca"], files["client"], files["client-key"]),
    )
    assert code == 3, err
    assert f"TLS {what} {files[missing]} does not exist ({option} or dask config" in err
    assert out == "" and "Traceback" not in err


@pytest.mark.hostile
def test_a_tls_file_that_does_not_load_is_bad_data(store, pki, tmp_path: Path) -> None:
    path, _ = store
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    code, _, err = run(
        "rechunk",
        path,
        tmp_path / "t",
        "--chunks",
        "100,7,2",
        "--scheduler",
        "tls://127.0.0.1:1",
        *tls_args(pki["ca"], garbage, pki["client-key"]),
    )
    assert code == 4, err
    assert f"cannot load the TLS certificate {garbage} with key {pki['client-key']}" in err
    code, _, err = run(
        "stats",
        path,
        "-b",
        "distributed",
        "--scheduler",
        "tls://127.0.0.1:1",
        *tls_args(pki["ca"], pki["client"], pki["rogue-client-key"]),
    )
    assert code == 4 and "KEY_VALUES_MISMATCH" in err, err


@pytest.mark.fault
@pytest.mark.parametrize(
    "files",
    [
        ("rogue-ca", "rogue-client", "rogue-client-key"),  # the client trusts another CA
        ("ca", "rogue-client", "rogue-client-key"),  # the scheduler rejects the client
    ],
)
def test_a_failed_handshake_is_a_cluster_error_naming_the_address(
    tls_scheduler, pki, store, files: tuple[str, str, str]
) -> None:
    path, _ = store
    started = time.monotonic()
    code, out, err = run(
        "stats",
        path,
        "-b",
        "distributed",
        "--scheduler",
        tls_scheduler,
        *tls_args(*(pki[f] for f in files)),
        "--timeout",
        "3",
    )
    assert code == 7, err
    assert f"TLS handshake with the dask scheduler at {tls_scheduler} failed" in err
    assert out == "" and len(err.strip().splitlines()) == 1
    assert time.monotonic() - started < 20  # bounded by --timeout, not dask's default 30 s


@pytest.mark.hostile
def test_a_tcp_address_of_a_tls_scheduler_suggests_tls(tls_scheduler, store) -> None:
    path, _ = store
    plain = tls_scheduler.replace("tls://", "tcp://")
    code, _, err = run("stats", path, "-b", "distributed", "--scheduler", plain, "--timeout", "3")
    assert code == 7, err
    assert f"the dask scheduler at {plain} closed the connection" in err
    assert f"if it is a TLS scheduler, use {tls_scheduler}" in err


@pytest.mark.fault
def test_an_unreachable_tls_scheduler_fails_within_the_timeout(pki, store) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path, _ = store
    code, _, err = run(
        "stats",
        path,
        "-b",
        "distributed",
        "--scheduler",
        f"tls://127.0.0.1:{port}",
        *client_args(pki),
        "--timeout",
        "1",
    )
    assert code == 7
    assert f"cannot reach a dask scheduler at tls://127.0.0.1:{port} within 1 s" in err


@pytest.mark.hostile
def test_library_security_needs_a_tls_scheduler(pki, store) -> None:
    path, _ = store
    security = client_security(pki)
    with pytest.raises(UsageError, match="no scheduler is given"):
        genotype_stats(str(path), backend="distributed", security=security)
    with pytest.raises(UsageError, match="tcp://h:1 is not a tls:// address"):
        genotype_stats(str(path), backend="distributed", scheduler="tcp://h:1", security=security)
    with pytest.raises(UsageError, match="--tls-\\* does not apply to the dask backend"):
        genotype_stats(str(path), backend="dask", security=security)
    with pytest.raises(UsageError, match="no scheduler is given"):
        plan_recompress(str(path), compressor="zstd:1", security=security)
    assert tls_security("tls://h:1") is None
    built = tls_security("tls://h:1", ca_file=pki["ca"], cert=pki["client"])
    with pytest.raises(BadDataError, match="with no --tls-key, the certificate file must hold"):
        check_security("tls://h:1", built)
    built = tls_security("tls://h:1", ca_file=pki["ca"], cert=pki["client"], key=pki["client-key"])
    assert check_security("tls://h:1", built) is built


def test_security_with_pem_text_in_memory(tls_scheduler, pki) -> None:
    """dask also takes certificates as PEM text (as Security.temporary() makes them)."""
    from distributed import Security

    security = Security(
        tls_ca_file=pki["rogue-ca"].read_text(),
        tls_client_cert=pki["rogue-client"].read_text(),
        tls_client_key=pki["rogue-client-key"].read_text(),
    )
    assert check_security("tls://h:1", security) is security
    with pytest.raises(
        ClusterError, match=f"TLS handshake with the dask scheduler at {tls_scheduler}"
    ):
        with dask_client(tls_scheduler, timeout=3, security=security):
            pass
