"""The README's Python API example runs as printed (on the bundled demo picture for its
"face.jpg"): a user's first copy-and-paste must not stop at a NameError."""
from __future__ import annotations

import re
from pathlib import Path

from tracker.assets import DEMO_IMAGE

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_api_example_runs(capsys):
    section = README.read_text(encoding="utf-8").split("### Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"face.jpg"' in code
    scope: dict = {}
    exec(compile(code.replace('"face.jpg"', repr(str(DEMO_IMAGE))), "README.md (Python API)", "exec"), scope)
    assert scope["result"].faces  # the last call, with the two boxes: at least one face fitted
    assert scope["labels"].shape == scope["frame"].shape[:2] and scope["labels"].max() > 0  # the parts
    assert scope["maps"]["uv"].shape == (2, *scope["frame"].shape[:2])
    assert scope["out"].shape == scope["frame"].shape and (scope["out"] != scope["frame"]).any()  # the face painted
    assert scope["texture"].shape == (256, 256, 3) and 0.2 < scope["seen"].mean() < 0.9
    assert "detect" in capsys.readouterr().out  # the timings printed
