"""LocalStack's filesystem, rooted in the backend's state directory.

LocalStack runs as a host process with ``OVERRIDE_IN_DOCKER=0`` and
``FILESYSTEM_ROOT=<state>/localstack/filesystem``: every directory it uses (libraries,
cache, data, tmp) then lies under that root, never in ``/var/lib/localstack``. (Left to
itself it believes it runs in a container wherever ``/.dockerenv`` exists, and uses
the container paths.)

LocalStack installs its packages on demand into ``<root>/var/lib/localstack/lib``
unless a package's marker file is already there, and reads its service catalog from
``<root>/usr/lib/localstack`` if one was built there (a link to the cache, where the
install step built it). Two packages are wired in before it starts:

* ``java/21`` (LocalStack would download Temurin 21): a directory whose ``bin/java``
  is a script running the local JDK (17 is enough for DynamoDB Local 3), rewriting
  ``-jar DynamoDBLocal.jar`` so the jar starts through our loopback launcher;
* ``dynamodb-local/2``: links to the jar and libraries from the cache, and our
  launcher jar in place of the Java agent LocalStack would download.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from emulator.aws.backends.dynamodb_local import LAUNCHER_CLASS, DynamoDBLocal
from emulator.aws.backends.jdk import Jdk

#: The versions LocalStack 2026.3.0 looks for (see its dynamodb ``packages`` module).
_JAVA_VERSION_DIR = "java/21"
_DYNAMODB_VERSION_DIR = "dynamodb-local/2"
_AGENT_JAR_NAME = "ddb-local-loader-0.1.jar"
#: Entries of the real JDK's home that the wrapper home mirrors with links.
_JDK_ENTRIES = ("lib", "conf", "release", "legal")

_JAVA_WRAPPER = """\
#!/bin/sh
# LocalStack starts DynamoDB Local as "java ... -jar DynamoDBLocal.jar ARGS", which
# listens on every interface. This starts the same jar through a launcher that binds
# it to 127.0.0.1, and passes every other command line through unchanged.
real_java={real_java}
launcher={launcher}
remaining=$#
while [ "$remaining" -gt 0 ]; do
    arg=$1
    shift
    remaining=$((remaining - 1))
    if [ "$arg" = "-jar" ] && [ "$remaining" -gt 0 ]; then
        jar=$1
        shift
        remaining=$((remaining - 1))
        case "$jar" in
            *DynamoDBLocal.jar) set -- "$@" -cp "$jar:$launcher" {launcher_class} ;;
            *) set -- "$@" -jar "$jar" ;;
        esac
    else
        set -- "$@" "$arg"
    fi
done
exec "$real_java" "$@"
"""


def java_wrapper_script(real_java: Path, launcher_jar: Path) -> str:
    return _JAVA_WRAPPER.format(
        real_java=shlex.quote(str(real_java)),
        launcher=shlex.quote(str(launcher_jar)),
        launcher_class=LAUNCHER_CLASS,
    )


def _replace_with_link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(target)


@dataclass(frozen=True)
class LocalStackFilesystem:
    """``<state>/localstack``: LocalStack's filesystem root, its configuration dir and its log."""

    directory: Path

    @property
    def root(self) -> Path:
        return self.directory / "filesystem"

    @property
    def config_dir(self) -> Path:
        return self.directory / "config"

    @property
    def log_file(self) -> Path:
        return self.directory / "localstack.log"

    @property
    def var_libs(self) -> Path:
        return self.root / "var" / "lib" / "localstack" / "lib"

    @property
    def static_libs(self) -> Path:
        return self.root / "usr" / "lib" / "localstack"

    def prepare(self, jdk: Jdk, dynamodb: DynamoDBLocal, static_libs: Path) -> None:
        """Create the directories and (re)write the links to the cache and the JDK wiring."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.static_libs.parent.mkdir(parents=True, exist_ok=True)
        _replace_with_link(self.static_libs, static_libs)
        java_home = self.var_libs / _JAVA_VERSION_DIR
        shutil.rmtree(java_home, ignore_errors=True)
        (java_home / "bin").mkdir(parents=True)
        for entry in _JDK_ENTRIES:
            if (jdk.home / entry).exists():
                (java_home / entry).symlink_to(jdk.home / entry)
        wrapper = java_home / "bin" / "java"
        wrapper.write_text(java_wrapper_script(jdk.java, dynamodb.launcher_jar), encoding="utf-8")
        wrapper.chmod(0o755)

        dynamodb_home = self.var_libs / _DYNAMODB_VERSION_DIR
        dynamodb_home.mkdir(parents=True, exist_ok=True)
        _replace_with_link(dynamodb_home / "DynamoDBLocal.jar", dynamodb.jar)
        _replace_with_link(dynamodb_home / "DynamoDBLocal_lib", dynamodb.library_dir)
        _replace_with_link(dynamodb_home / _AGENT_JAR_NAME, dynamodb.launcher_jar)
