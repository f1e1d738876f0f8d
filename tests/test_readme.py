"""The README's code examples run as written."""

import pathlib
import re

import numpy as np

import kerasmm

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_block_after(heading):
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_own_encoder_example_registers_and_trains():
    namespace = {}
    exec(python_block_after("## Your own encoder or fusion"), namespace)
    model = namespace["model"]
    assert "mean_pixels" in kerasmm.encoders.list()
    assert type(model.backbone.encoder_layers["image"]).__name__ == "MeanPixelEncoder"
    data = kerasmm.data.shapes(num_examples=4, batch_size=2)
    history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
