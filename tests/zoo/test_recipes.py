"""The recipes in zoo/: one per zoo entry, each loadable, with valid settings and a measured result."""

import os

import pytest

import kerasmm
from kerasmm import recipes

NAMES = recipes.names()


def test_recipes_and_zoo_entries_match_one_to_one():
    assert NAMES == kerasmm.zoo.list()


@pytest.mark.parametrize("name", NAMES)
def test_recipe_loads_with_valid_settings(name):
    recipe = recipes.load(name)
    assert recipe.name == name and recipe.entry == name
    kerasmm.zoo.merge_config(kerasmm.zoo.entry(name).config, recipe.model, name)  # raises on an unknown key
    assert set(recipe.train) == set(recipes.TRAIN_DEFAULTS)
    assert recipe.data["reader"] == "shapes" and recipe.held_out["split"] == "test"
    assert recipe.held_out.get("with_audio") == recipe.data.get("with_audio")
    assert f"kerasmm train {name} --out runs/{name}" in recipe.doc
    assert "Result" in recipe.doc and "to be measured" not in recipe.doc
    assert os.path.isfile(os.path.join(recipes.ZOO_DIR, name, "README.md"))


@pytest.mark.parametrize("name", NAMES)
def test_tiny_recipe_uses_the_tiny_twin(name):
    tiny = recipes.load("tiny_" + name)
    assert tiny.entry == "tiny_" + name and tiny.model == {}
    assert tiny.data["num_examples"] == recipes.TINY["examples"] and tiny.train["epochs"] == 1


def test_a_recipe_file_path_loads(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text('"""Mine."""\nENTRY = "tiny_captioner"\nDATA = {"reader": "shapes", "task": "captioning"}\n')
    recipe = recipes.load(str(path))
    assert recipe.name == "mine" and recipe.held_out is None and recipe.train == recipes.TRAIN_DEFAULTS
    path.write_text('ENTRY = "tiny_captioner"\nMODEL = {"colour": 1}\nDATA = {"reader": "shapes"}\n')
    with pytest.raises(ValueError, match="no setting 'colour'"):
        recipes.load(str(path))
    path.write_text("ENTRY = (\n")
    with pytest.raises(ValueError, match="Cannot run the recipe"):
        recipes.load(str(path))


@pytest.mark.parametrize(
    "text, expected",
    [("epochs=3", ("epochs", 3)), ("learning_rate=1e-3", ("learning_rate", 1e-3)),
     ("model.encoders.text=None", ("model.encoders.text", None)), ("data.captions=all", ("data.captions", "all")),
     ("model.filters=[8, 16]", ("model.filters", [8, 16])), ("data.on_error='skip'", ("data.on_error", "skip"))],
)
def test_parse_setting(text, expected):
    assert recipes.parse_setting(text) == expected


def test_settings_reach_their_section():
    recipe = recipes.load("tiny_captioner").with_settings(
        ["epochs=2", "examples=4", "held_out_examples=2", "learning_rate=0.01", "model.encoders.image.output_dim=8",
         "data.caption_dropout=0.5"])
    assert recipe.train["epochs"] == 2
    assert recipe.data["num_examples"] == 4 and recipe.data["caption_dropout"] == 0.5
    assert recipe.held_out["num_examples"] == 2
    assert recipe.model == {"learning_rate": 0.01, "encoders": {"image": {"output_dim": 8}}}
    config = recipe.model_config()
    assert config["encoders"]["image"] == {"name": "cnn", "output_dim": 8, "filters": [8, 16]}
    features, captions = next(iter(recipe.dataset("data")))
    assert captions.shape == [4] and features["image"].shape == [4, 32, 32, 3]


@pytest.mark.parametrize(
    "spec, expected",
    [("shapes", {"reader": "shapes"}), ("tfds:mnist", {"reader": "tfds", "name": "mnist"}),
     ("tfds:mnist:test[:10%]", {"reader": "tfds", "name": "mnist", "split": "test[:10%]"})],
)
def test_parse_data(spec, expected):
    assert recipes.parse_data(spec) == expected


def test_parse_data_checks_files(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    assert recipes.parse_data(f"coco:{tmp_path}/a.json:{tmp_path}") == {
        "reader": "coco", "annotations_json": f"{tmp_path}/a.json", "image_dir": str(tmp_path)}
    with pytest.raises(FileNotFoundError, match="no folder"):
        recipes.parse_data(f"coco:{tmp_path}/a.json:{tmp_path}/images")
    with pytest.raises(ValueError, match="shapes takes shapes "):
        recipes.parse_data("shapes:extra")
