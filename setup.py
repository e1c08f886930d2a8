"""Package discovery for setuptools (the rest of the metadata is in pyproject.toml).

The repository's top-level folders are the subpackages of one import name, ``instabnn`` (``model/`` is
``instabnn.model``, ``hw/blocks/pool/`` is ``instabnn.hw.blocks.pool``), and every folder below them with an
``__init__.py`` is a package: a new block folder needs no packaging line."""

from pathlib import Path

TOP_LEVEL = ("contract", "model", "hw", "sim", "deploy", "outputs")
ROOT = Path(__file__).resolve().parent


def discover() -> tuple[list[str], dict[str, str]]:
    """(package names, package_dir) of every package under the top-level folders."""
    packages = []
    for top in TOP_LEVEL:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            packages.append(".".join(("instabnn", *init.parent.relative_to(ROOT).parts)))
    return packages, {f"instabnn.{top}": top for top in TOP_LEVEL}


if __name__ == "__main__":
    from setuptools import setup

    packages, package_dir = discover()
    setup(packages=packages, package_dir=package_dir)
