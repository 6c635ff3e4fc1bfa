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


def test_readme_tables_are_the_published_reproduce_outputs():
  """Every table the README marks as reproduced is experiments/results/<name>.md, byte for
  byte, and that file is reproduce.markdown of its JSON: no number is edited by hand."""
  import json

  import reproduce
  readme = open(reproduce.README).read()
  names = re.findall(r"<!-- reproduce:([a-z0-9_.-]+) -->", readme)
  published = sorted(f[:-3] for f in os.listdir(reproduce.RESULTS_DIR) if f.endswith(".md"))
  assert sorted(names) == published, "README blocks and experiments/results/ differ"
  for name in names:
    start, end = reproduce.readme_block(name)
    block = readme.split(start, 1)[1].split(end, 1)[0]
    md = open(os.path.join(reproduce.RESULTS_DIR, f"{name}.md")).read()
    assert block == md, f"README's {name} table is not experiments/results/{name}.md"
    summary = json.load(open(os.path.join(reproduce.RESULTS_DIR, f"{name}.json")))
    assert reproduce.markdown(summary) == md, f"{name}.md is not the table of {name}.json"
    assert not summary["quick"] and summary["made"]["machine"]
