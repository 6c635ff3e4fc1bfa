"""The README's "use it from your own code" example runs as written."""

import os
import re


def test_readme_python_example_runs(capsys):
  readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
  section = readme.split("## Use it from your own code", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  exec(compile(code, "README.md", "exec"), {})
  out = capsys.readouterr().out
  assert "recon_loss" in out and "(4,)" in out
