"""The package's import direction, read from its source (the README's Layout section draws it).

A module imports only from its own part of the package or from parts of a
lower layer; a model family never imports another family; nothing but
`kerasmm/backend_compat.py` touches private Keras or TensorFlow modules.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "kerasmm"

# Lowest first. A part may import its own modules and any part of a lower layer.
LAYERS = [
    {"version", "registry", "validation", "backend_compat"},
    {"layers", "losses", "metrics", "generation", "data"},
    {"encoders", "fusions", "distribute", "export"},
    {"models"},
    {"zoo"},
    {"search", "recipes", "testing", "demo"},
    {"callbacks"},  # Keras callbacks for training runs; draws retrieval contact sheets with `search`
    {"cli"},
    {"__init__"},  # `import kerasmm` brings in every public part
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
FAMILIES = {p.name for p in (PACKAGE / "models").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
PRIVATE = ("keras.src", "tensorflow.python", "keras_hub.src")
PRIVATE_NAMES = ("_maybe_symbolic_build", "_flatten_layers", "_in_multi_worker_mode", "_aggregate_additional_loss")


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def dotted(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path):
    """Every module `path` imports (at any depth of its code, not its docstrings)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "kerasmm":
                names += [f"kerasmm.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
    return names


def part_of(module):
    """`kerasmm.data.coco` → "data"; the package's own `__init__` → "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def family_of(module):
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "models" and parts[2] in FAMILIES else None


def test_every_part_of_the_package_has_a_layer():
    parts = {part_of(dotted(p)) for p in modules()}
    assert parts <= set(RANK), f"put {sorted(parts - set(RANK))} in a layer of tests/test_layering.py"


def test_imports_follow_the_layers():
    wrong = []
    for path in modules():
        source = dotted(path)
        for target in imported(path):
            if not target.startswith("kerasmm."):
                continue
            a, b = part_of(source), part_of(target)
            if a != b and RANK[b] >= RANK[a]:
                wrong.append(f"{source} imports {target} (layer {RANK[b]}) from layer {RANK[a]}")
            if family_of(source) and family_of(target) and family_of(source) != family_of(target):
                wrong.append(f"{source} imports {target}: share what two families need from kerasmm/models/")
    assert not wrong, "imports against the direction:\n" + "\n".join(wrong)


def test_private_apis_only_in_the_compat_module():
    found = []
    for path in modules():
        if path == PACKAGE / "backend_compat.py":
            continue
        text = path.read_text()
        found += [f"{dotted(path)}: {t}" for t in imported(path) if t.startswith(PRIVATE)]
        found += [f"{dotted(path)}: {name}" for name in PRIVATE_NAMES if name in text]
    assert not found, "private APIs outside kerasmm/backend_compat.py (move them there, with their why):\n" + \
        "\n".join(found)
