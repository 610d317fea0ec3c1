"""A regular install works: ``pip install .`` (not editable) into a fresh environment, then
``connector`` from another folder.

The wheel is built from a copy of the working tree (so the build never writes ``build/`` or
``*.egg-info`` into the checkout, and no stale ``build/lib`` hides a missing file), installed
with ``--no-deps`` into a fresh virtual environment that sees this environment's packages
(flask, click, ...) but not the checkout, and run with the working directory elsewhere.

The build runs without build isolation (offline) when this environment has the build backend
pyproject.toml asks for (``.ci/run`` installs it); otherwise pip fetches it, as ``pip install .``
would.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
# Top-level entries of the checkout the build does not need (tests, local state, outputs).
SKIP_TOP = {".git", ".ci", ".benchmarks", ".pytest_cache", ".venv", "bench", "build", "dist",
            "instance", "node_modules", "out", "tests"}
TIMEOUT = 240


def _version(name: str) -> tuple[int, ...]:
    try:
        text = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ()
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _offline_build() -> bool:
    """Whether this environment has the build backend (setuptools>=68, and wheel before 70.1)."""
    setuptools = _version("setuptools")
    if not setuptools or setuptools < (68, 0):
        return False
    return setuptools >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _env() -> dict[str, str]:
    """This environment minus anything that would put the checkout on the path or configure
    the service."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
           and not k.startswith(("CONNECTOR_", "DUMPLING_", "SOCIALFETCH_", "TIKTOK_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(args, cwd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                            timeout=TIMEOUT, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _copy_source(target: Path) -> Path:
    target.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in SKIP_TOP or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))
        else:
            shutil.copy2(entry, target / entry.name)
    return target


def _package_files(source: Path) -> set[str]:
    """Every file of the ``connector`` package in the source tree (what the wheel must hold)."""
    return {path.relative_to(source).as_posix() for path in (source / "connector").rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


def _manifest_names() -> list[str]:
    return sorted(p.name for p in MANIFESTS.glob("*.json"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(source copy, wheel path)."""
    base = tmp_path_factory.mktemp("install")
    source = _copy_source(base / "src")
    wheels = base / "wheels"
    args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, "."]
    if _offline_build():
        args.insert(4, "--no-build-isolation")
    _run(args, cwd=source)
    (wheel,) = wheels.glob("tiktok_connector-*.whl")
    return source, wheel


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """A fresh virtual environment with the wheel installed; returns its ``bin`` folder."""
    _, wheel = built
    base = tmp_path_factory.mktemp("venv")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=base).stdout.strip())
    # This environment's packages (the dependencies, and pip), after the venv's own. Plain
    # paths: .pth files there (such as an editable install of this checkout) are not run.
    outer = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        outer.append(site.getusersitepackages())
    (purelib / "_outer_site.pth").write_text("".join(f"{p}\n" for p in outer))
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel], cwd=base)
    return bindir


def test_wheel_ships_the_package_and_the_manifests(built):
    source, wheel = built
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    missing = _package_files(source) - names
    assert not missing, (f"the wheel leaves out {sorted(missing)}: add them to "
                         "[tool.setuptools.package-data] in pyproject.toml")
    assert "connector/py.typed" in names
    with zipfile.ZipFile(wheel) as whl:
        for name in _manifest_names():
            assert whl.read(f"connector/_manifests/{name}") == (MANIFESTS / name).read_bytes(), name
    assert not any(n.startswith("manifests/") for n in names), "manifests/ must not be a top-level package"


def test_installed_connector_runs_from_another_folder(installed, tmp_path):
    bindir = installed
    venv = bindir.parent
    connector = bindir / ("connector.exe" if os.name == "nt" else "connector")
    where = _run([bindir / "python", "-c",
                  "import connector, connector.config as c; print(connector.__file__); print(c.MANIFESTS_DIR)"],
                 cwd=tmp_path).stdout.splitlines()
    assert Path(where[0]).resolve().is_relative_to(venv.resolve()), f"imported the checkout: {where[0]}"
    assert Path(where[1]).resolve().is_relative_to(venv.resolve()), f"manifests from the checkout: {where[1]}"

    checked = _run([connector, "manifests", "check"], cwd=tmp_path)
    for name in _manifest_names():
        if name != "schema.json":
            assert f"ok  {name}" in checked.stdout, checked.stdout
    assert "manifests valid" in checked.stdout

    out = tmp_path / "o.json"
    _run([connector, "export", "openapi", "--out", out], cwd=tmp_path)
    document = json.loads(out.read_text())
    routes = {json.loads((MANIFESTS / name).read_text())["route"]
              for name in _manifest_names() if name != "schema.json"}
    assert routes <= set(document["paths"]), sorted(document["paths"])


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is not installed")
def test_sdist_carries_the_manifests(built, tmp_path):
    """``python -m build`` makes the wheel from the sdist: the sdist must hold manifests/."""
    source, _ = built
    work = _copy_source(tmp_path / "src")
    _run([sys.executable, "-c",
          "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))",
          tmp_path / "dist"], cwd=work)
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = {f"manifests/{name}" for name in _manifest_names()} - names
    assert not missing, f"the sdist leaves out {sorted(missing)}"
    assert not (_package_files(source) - names), sorted(_package_files(source) - names)
