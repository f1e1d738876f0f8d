"""`make demo` end to end at a tiny size: the report holds real images, captions and figures."""

import json
import os

import pytest

from kerasmm import demo

pytestmark = pytest.mark.integration


def test_demo_writes_the_report(tmp_path, capsys):
    out = str(tmp_path / "demo_out")
    numbers = demo.main(["--examples", "64", "--test-examples", "20", "--epochs", "1", "--retrieval-epochs", "1",
                         "--images", "2", "--batch-size", "32", "--out", out, "--quiet", "--tiny"])
    report = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    for name in ("images/held_out_0.jpg", "images/held_out_1.jpg", "losses.png", "retrieval.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
        assert name in report, name
    assert os.path.isfile(os.path.join(out, "captioner", "1", "saved_model.pb"))
    assert json.load(open(os.path.join(out, "numbers.json"), encoding="utf-8")) == numbers
    assert 0.0 <= float(numbers["captioner held-out BLEU-4"]) <= 1.0
    printed = capsys.readouterr().out
    assert "held_out_0.jpg: '" in printed and printed.strip().splitlines()[-1].startswith("ratio:")
