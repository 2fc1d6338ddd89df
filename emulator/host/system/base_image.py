"""A Debian base image built here: no container registry can be reached to pull one.

``debootstrap --variant=minbase --include=python3 SUITE DIR MIRROR`` builds a root
filesystem from the Debian mirror apt already uses, and ``docker import`` turns it
into an image. Images built ``FROM`` it (``--build-arg BASE_IMAGE=...``) need no
registry either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound

from emulator.host.install_lock import install_lock
from emulator.host.process import tail_file
from emulator.host.progress import step
from emulator.host.system.errors import SystemSetupError
from emulator.host.system.mirror import debian_codename, debian_mirror
from emulator.host.system.tools import ensure_tool, find_command

BASE_IMAGE_REPOSITORY = "nitro-vault/debian-base"
_DEBOOTSTRAP_TIMEOUT = 1800


@dataclass(frozen=True)
class BaseImageSpec:
    suite: str = field(default_factory=debian_codename)
    #: ``None``: the mirror this machine's apt sources name for ``suite``.
    mirror: str | None = None
    variant: str = "minbase"
    include: tuple[str, ...] = ("python3",)
    repository: str = BASE_IMAGE_REPOSITORY

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.suite}"


@dataclass(frozen=True)
class BaseImageResult:
    name: str
    image_id: str
    #: False when the image already existed.
    built: bool
    seconds: float
    mirror: str | None = None


def _existing_image_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return str(client.images.get(name).id)
    except ImageNotFound:
        return None


def _debootstrap(spec: BaseImageSpec, mirror: str, rootfs: Path, log_file: Path) -> None:
    debootstrap = find_command("debootstrap")
    if debootstrap is None:
        raise SystemSetupError("debootstrap not found after installing it")
    command = [
        debootstrap,
        f"--variant={spec.variant}",
        *([f"--include={','.join(spec.include)}"] if spec.include else []),
        spec.suite,
        str(rootfs),
        mirror,
    ]
    with open(log_file, "wb") as log:
        try:
            result = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=_DEBOOTSTRAP_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise SystemSetupError(f"debootstrap timed out; see {log_file}") from exc
    if result.returncode != 0:
        raise SystemSetupError(f"debootstrap failed; see {log_file}:\n{tail_file(log_file, 20)}")


def _import(rootfs: Path, name: str, docker_host: str) -> None:
    docker_cli = find_command("docker")
    if docker_cli is None:
        raise SystemSetupError(
            "the docker command is missing; run `python -m emulator.host.system ensure docker`"
        )
    env = {**os.environ, "DOCKER_HOST": docker_host}
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    try:
        imported = subprocess.run(
            [docker_cli, "import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', "-", name],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar_status = tar.wait()
    if tar_status != 0 or imported.returncode != 0:
        raise SystemSetupError(f"importing {rootfs} as {name} failed: {imported.stderr.strip()}")


def ensure_base_image(
    spec: BaseImageSpec, docker_host: str, work_dir: Path, *, rebuild: bool = False
) -> BaseImageResult:
    """Return the base image, building it first if it is missing (or ``rebuild``)."""
    began = time.monotonic()
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=120)
        existing = _existing_image_id(client, spec.name)
    except DockerException as exc:
        raise SystemSetupError(f"no Docker engine answers at {docker_host}: {exc}") from exc
    try:
        if existing is not None and not rebuild:
            return BaseImageResult(spec.name, existing, False, time.monotonic() - began)
        if os.geteuid() != 0:
            raise SystemSetupError("debootstrap needs root to build the base image")
        ensure_tool("debootstrap")
        mirror = spec.mirror or debian_mirror(spec.suite)
        work_dir.mkdir(parents=True, exist_ok=True)
        # One build per machine at a time: two builders would share (and delete) one rootfs.
        with install_lock(work_dir / f"build-{spec.suite}.lock"):
            existing = _existing_image_id(client, spec.name)
            if existing is not None and not rebuild:
                return BaseImageResult(spec.name, existing, False, time.monotonic() - began)
            rootfs = work_dir / f"rootfs-{spec.suite}"
            shutil.rmtree(rootfs, ignore_errors=True)
            try:
                with step(f"base image {spec.name}: debootstrap {spec.suite} from {mirror} (once a machine)"):
                    _debootstrap(spec, mirror, rootfs, work_dir / f"debootstrap-{spec.suite}.log")
                with step(f"base image {spec.name}: docker import"):
                    _import(rootfs, spec.name, docker_host)
            finally:
                # ~260 MB that the image now holds.
                shutil.rmtree(rootfs, ignore_errors=True)
        image_id = _existing_image_id(client, spec.name)
        if image_id is None:
            raise SystemSetupError(f"{spec.name} is missing right after its import")
        return BaseImageResult(spec.name, image_id, True, time.monotonic() - began, mirror)
    finally:
        client.close()
