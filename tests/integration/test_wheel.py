"""The wheel is complete: built from the source tree, installed into a new venv, run from a folder outside it.

`pip install .` must ship all that `kerasmm` needs at run time, the recipes
of the top-level `zoo/` included (as `kerasmm/zoo_recipes/`). The test
builds the sdist from a copy of the source tree and the wheel from the
sdist (as `python -m build` does, so a file the sdist leaves out fails here
too), offline: setuptools' build backend of this environment, no build
isolation. It installs the wheel into a new venv and runs `kerasmm list`,
`train`, `eval` and `export` there from an empty folder, checking each time
that the kerasmm running is the wheel's.

The dependencies: installing TensorFlow and the rest into a new venv takes
1.5 to 3 minutes here (about 1 GB downloaded each time), too long for every
run of the suite. So the new venv reaches this environment's installed
packages through a `.pth` file naming a folder of links to each of them,
kerasmm (its editable install) left out; a path line in a `.pth` file runs
none of that folder's own `.pth` files. pip installs the wheel with
`--no-index`, so it still checks that those packages satisfy the wheel's
requirements: one missing from setup.cfg's install_requires, or pinned to
another version, fails the install. `KERASMM_WHEEL_FROM_INDEX=1` installs the
dependencies from the package index instead, as a user's `pip install` does.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile

import pytest

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
FROM_INDEX = os.environ.get("KERASMM_WHEEL_FROM_INDEX") == "1"
# Top-level entries of the repository the source copy leaves out: no part of a build, some large, some stale
# (a build/ of an earlier build would bring back deleted modules). The sdist takes what it needs from the rest.
NOT_SOURCE = (".git", ".venv", "venv", "build", "dist", "*.egg-info", ".*_cache", "tests", "benchmarks", "runs", "run",
              "demo_out", "*.keras")
TIMEOUT = 600


def run(command, cwd, env=None, timeout=TIMEOUT):
    """`subprocess.run` with the output captured; AssertionError with the output on a non-zero exit."""
    result = subprocess.run([os.fspath(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (f"{' '.join(map(str, command))} exited {result.returncode}:\n"
                                    f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def build_backend(hook, source, out):
    """Run setuptools' PEP 517 hook `hook` ("build_sdist" or "build_wheel") in `source`; the built file's path."""
    code = ("import sys\nfrom setuptools import build_meta\n"
            f"print('\\nBUILT', build_meta.{hook}(sys.argv[1]))")
    result = run([sys.executable, "-c", code, out], cwd=source)
    return out / result.stdout.rsplit("BUILT ", 1)[1].strip()


def dependency_links(folder):
    """A folder of links to each package installed here but kerasmm (and its editable finder)."""
    folder.mkdir()
    for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if name.startswith(("kerasmm", "__editable__")) or name.endswith(".pth"):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A new venv with the wheel installed: its python, kerasmm script, site-packages, environment, work folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source, dist = tmp / "source", tmp / "dist"
    top_level, caches = shutil.ignore_patterns(*NOT_SOURCE), shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT, source, symlinks=True,
                    ignore=lambda folder, names: top_level(folder, names) if pathlib.Path(folder) == ROOT
                    else caches(folder, names))
    dist.mkdir()
    sdist = build_backend("build_sdist", source, dist)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "sdist", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    unpacked = tmp / "sdist" / sdist.name.removesuffix(".tar.gz")
    wheel = build_backend("build_wheel", unpacked, dist)

    prefix = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", prefix], cwd=tmp)
    python = prefix / "bin" / "python"
    site = pathlib.Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            cwd=tmp).stdout.strip())
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check"]
    if FROM_INDEX:
        run(install + [wheel], cwd=tmp, timeout=1800)
    else:
        (site / "kerasmm_test_dependencies.pth").write_text(f"{dependency_links(tmp / 'dependencies')}\n")
        run(install + ["--no-index", wheel], cwd=tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PATH=f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    work = tmp / "work"
    work.mkdir()
    return {"python": python, "kerasmm": prefix / "bin" / "kerasmm", "site": site, "env": env, "work": work}


def kerasmm(venv, *arguments, timeout=TIMEOUT):
    """Run the venv's `kerasmm` command in its empty work folder; its output."""
    return run([venv["kerasmm"], *arguments], cwd=venv["work"], env=venv["env"], timeout=timeout).stdout


def test_the_installed_package_is_the_wheel_with_its_recipes_licence_and_metadata(venv):
    code = """if True:
        import importlib.metadata, importlib.resources, json, sys
        import kerasmm
        dist = importlib.metadata.distribution("kerasmm")
        shipped = [d for d in (importlib.resources.files("kerasmm") / "zoo_recipes").iterdir() if d.is_dir()]
        print(json.dumps({
            "file": kerasmm.__file__, "dist": str(dist.locate_file("")), "path": sys.path,
            "recipes": sorted(d.name for d in shipped if (d / "recipe.py").is_file()),
            "readmes": sorted(d.name for d in shipped if (d / "README.md").is_file()),
            "files": [str(f) for f in dist.files], "urls": dist.metadata.get_all("Project-URL"),
            "requires": dist.requires, "extras": dist.metadata.get_all("Provides-Extra"),
        }))
    """
    found = json.loads(run([venv["python"], "-c", code], cwd=venv["work"], env=venv["env"]).stdout.splitlines()[-1])
    site = venv["site"]
    assert pathlib.Path(found["file"]) == site / "kerasmm" / "__init__.py"
    assert pathlib.Path(found["dist"]) == site
    assert not any(p and pathlib.Path(p).resolve() == ROOT for p in found["path"])
    in_source = sorted(p.parent.name for p in (ROOT / "zoo").glob("*/recipe.py"))
    assert found["recipes"] == in_source and found["readmes"] == in_source
    assert not any(f.endswith("learning_check.py") for f in found["files"])  # scripts of a source checkout
    assert any(f.startswith("kerasmm-") and f.endswith("LICENSE") for f in found["files"])
    assert {url.split(",")[0] for url in found["urls"]} == {"Source", "Issues", "Documentation"}
    assert any(r.startswith("tensorboard") for r in found["requires"])
    assert {"gpu", "serving", "eval", "test"} <= set(found["extras"])


def test_list_train_eval_export_from_the_wheel(venv):
    # --no-params: counting parameters builds every entry (16 s more here), which the zoo tests do.
    assert "captioner" in kerasmm(venv, "list", "--no-params").split()
    kerasmm(venv, "train", "captioner", "--out", "run", "--set", "examples=64", "--set", "held_out_examples=16",
            "--set", "epochs=1", "--verbose", "2")
    run_dir = venv["work"] / "run"
    assert (run_dir / "model.keras").is_file()
    shipped = venv["site"] / "kerasmm" / "zoo_recipes" / "captioner" / "recipe.py"
    assert json.loads((run_dir / "recipe.json").read_text())["source"] == os.fspath(shipped)
    metrics = json.loads(kerasmm(venv, "eval", "run", "--quiet").splitlines()[-1])
    assert {"loss", "bleu_4", "cider_d"} <= set(metrics)
    version = kerasmm(venv, "export", "run", "out").splitlines()[-1]
    assert (venv["work"] / version / "saved_model.pb").is_file()
