"""Packages for setuptools; everything else is in setup.cfg.

The recipes live in the top-level `zoo/` folder of the repository and ship
inside the package as `kerasmm.zoo_recipes` (`zoo/<name>/recipe.py` and its
README.md, see `[options.package_data]`), where `kerasmm.recipes` finds them
in an installed wheel. setup.cfg cannot add a mapped package to the ones
`find:` finds, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["kerasmm", "kerasmm.*"]) + ["kerasmm.zoo_recipes"],
    package_dir={"kerasmm.zoo_recipes": "zoo"},
)
