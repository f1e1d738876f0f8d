"""Where `kerasmm.recipes` finds the recipes: the installed package's `zoo_recipes/` (a wheel), else the source `zoo/`.

tests/integration/test_wheel.py checks the same on a built and installed wheel.
"""

import pathlib

from kerasmm import recipes

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_a_source_checkout_reads_the_top_level_zoo_folder():
    assert pathlib.Path(recipes.ZOO_DIR) == ROOT / "zoo"
    assert recipes.names() == sorted(p.parent.name for p in (ROOT / "zoo").glob("*/recipe.py"))


def test_an_installed_package_reads_its_zoo_recipes_folder(tmp_path, monkeypatch):
    shipped = tmp_path / "kerasmm" / "zoo_recipes"
    (shipped / "mine").mkdir(parents=True)
    (shipped / "mine" / "recipe.py").write_text('ENTRY = "tiny_captioner"\nDATA = {"reader": "shapes"}\n')
    (shipped / "notes").mkdir()  # a folder without recipe.py is no recipe
    monkeypatch.setattr(recipes.importlib.resources, "files", lambda package: tmp_path / package)
    assert recipes._zoo_dir() == str(shipped)
    assert recipes.names(recipes._zoo_dir()) == ["mine"]
    assert recipes.load("mine", directory=recipes._zoo_dir()).source == str(shipped / "mine" / "recipe.py")
