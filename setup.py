"""Package discovery for setuptools; everything else is in pyproject.toml.

Here rather than in pyproject.toml because pyproject.toml cannot both discover packages
(``packages.find``) and add one from another folder: ``connector._manifests`` is the root
``manifests/`` folder, shipped inside the package so a regular (non-editable) install finds it.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["connector", "connector.*"], exclude=["*.__pycache__"]),
        "connector._manifests",
    ],
    package_dir={"connector._manifests": "manifests"},
)
