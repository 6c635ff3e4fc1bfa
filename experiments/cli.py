"""What the experiment scripts share: flag parsing, one-line errors, ``--help`` with the config.

:func:`run` is a script's whole command line: it parses ``argv`` into a fresh
``absl.flags.FlagValues`` (so that it can be called more than once in a process, as the
tests do), answers ``--help`` with the script's flags and the config's fields (their
current values and the comments beside them in the config files), checks the required
flags and ``--workdir``, runs the script's body and turns the errors a user can fix into one
line on stderr::

  error: config.learning_rate=-0.001: expected a positive number (a learning rate).

Exit codes: 0 done (or help shown), 2 a usage or config error (:class:`ConfigError`,
unknown or badly typed ``--config.FIELD``, a missing config file or one that fails to
load, a missing or bad ``--workdir``, a config that differs from the run it would resume),
1 a data error (a missing dataset, a corrupt data file), and a stopped run's own code
(:mod:`aaejax.run.guards`: 3 diverged, 4 a checkpoint failed, 128 + the signal's number
after a stop signal). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import io
import os
import re
import sys
import tokenize
import traceback
from typing import Any, Callable, Sequence

from absl import flags

from aaejax import data
from aaejax.run import guards
from aaejax.core.config_checks import check_workdir
from aaejax.errors import ConfigError

HELP_FLAGS = ("-h", "-help", "--help", "-helpshort", "--helpshort", "-helpfull", "--helpfull",
              "-?")
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
DEFAULT_CONFIG = os.path.join(CONFIGS_DIR, "default.py")


def _add_logging_flags(fv: flags.FlagValues) -> None:
  """absl's logging flags (``--verbosity``, ``--logtostderr``…) in ``fv`` as well."""
  for flag in flags.FLAGS.get_flags_for_module("absl.logging"):
    for name in (flag.name, flag.short_name):
      if name and name not in fv:
        fv[name] = flag


def config_argument(argv: Sequence[str], name: str = "config") -> str | None:
  """The value of ``--config`` in ``argv`` (``--config=F``, ``--config F``), or None."""
  for i, arg in enumerate(argv):
    m = re.match(rf"^--?{name}(=(.*))?$", arg)
    if m:
      if m.group(1) is not None:
        return m.group(2)
      return argv[i + 1] if i + 1 < len(argv) else None
  return None


def _overrides(argv: Sequence[str], name: str = "config") -> list[tuple[str, str]]:
  """(field path, the argument) of every ``--config.FIELD[=VALUE]`` in ``argv``."""
  out = []
  for arg in argv:
    m = re.match(rf"^--?(?:no)?{name}\.([^=]+)", arg)
    if m:
      out.append((m.group(1), arg))
  return out


def load_config(path_arg: str):
  """The config of ``--config=path[:arg]``, as its ``get_config`` returns it (for messages)."""
  path, sep, arg = path_arg.partition(":")
  spec = importlib.util.spec_from_file_location("_cli_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*([arg] if sep else []))


def _unknown_field(argv, path_arg) -> str | None:
  """The message for the first ``--config.FIELD`` of ``argv`` that the config lacks."""
  try:
    config = load_config(path_arg)
  except Exception:  # noqa: BLE001 — the config's own error is reported instead
    return None
  for path, arg in _overrides(argv):
    node, walked = config, []
    for key in path.split("."):
      if not hasattr(node, "keys") or key not in node.keys():
        where = "config" + "".join(f".{k}" for k in walked)
        known = list(node.keys()) if hasattr(node, "keys") else []
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean --{where}.{close[0]}?)" if close else ""
        if not hasattr(node, "keys"):
          return f"{arg}: {where} is {node!r}, not a dict: it has no field {key!r}."
        if walked:
          return (f"{arg}: no field {key!r} in {where} of {path_arg}{hint}; set the whole "
                  f"dict instead, e.g. --{where}=\"{{'{key}': ...}}\".")
        return f"{arg}: no field {key!r} in the config {path_arg}{hint}; --help lists them."
      node = node[key]
      walked.append(key)
  return None


def _illegal_value(message: str, path_arg: str | None) -> str:
  """A one-line message for absl's ``flag --config.F=V: <why>``, with the field's type."""
  m = re.match(r"^flag (--?config\.([\w.]+))=(.*?): (.*)$", message, re.S)
  if not m or not path_arg:
    return re.sub(r"^flag ", "", message)
  flag, field, value, why = m.groups()
  try:
    current = load_config(path_arg)
    for key in field.split("."):
      current = current[key]
  except Exception:  # noqa: BLE001
    return f"{flag}={value}: {why}"
  kind = {bool: "True or False", int: "an int", float: "a number", str: "a string"}.get(
      type(current), type(current).__name__)
  return f"{flag}={value}: expected {kind}, like the config's {current!r} ({why})."


def one_line(text: str) -> str:
  """``text`` on one line; a traceback in it shrinks to its last line (the error itself)."""
  if "Traceback (most recent call last)" in text:
    head = text.split("Error whilst parsing config file", 1)[0].split("Traceback", 1)[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{head.strip().rstrip(':')}: {lines[-1]}".lstrip(": ")
  return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _in_config_file(e: BaseException) -> str:
  """`` (file:line)`` of the innermost frame of ``e`` in the user's code (a config file)."""
  ours = os.path.abspath(__file__)
  frames = [f for f in traceback.extract_tb(e.__traceback__)
            if not f.filename.startswith("<") and "site-packages" not in f.filename
            and os.path.abspath(f.filename) != ours
            and not os.path.abspath(f.filename).startswith(sys.base_prefix + os.sep)]
  return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def parse(fv: flags.FlagValues, argv: Sequence[str]) -> None:
  """``fv(argv)``; raises :class:`ConfigError` with one line for whatever goes wrong."""
  path_arg = config_argument(argv)
  if path_arg is not None:
    path = path_arg.split(":", 1)[0]
    if not path:
      raise ConfigError("--config is empty; expected a config file, e.g. "
                        "--config=experiments/configs/aae_unsupervised.py.")
    if not os.path.isfile(path):
      raise ConfigError(f"--config={path_arg}: no such file {path!r}"
                        + (" (a directory)" if os.path.isdir(path) else "") + ".")
  # ml_collections loads the file as module "<flag>_config" and would reuse a stale one of an
  # earlier parse in this process (its functions where the new file lacks them).
  sys.modules.pop("config_config", None)
  try:
    fv(list(argv))
  except flags.UnrecognizedFlagError as e:
    known = [n for n in fv if not n.startswith("config.")]
    close = difflib.get_close_matches(str(e.flagname), known, n=1)
    hint = f" (did you mean --{close[0]}?)" if close else ""
    raise ConfigError(f"unknown flag --{e.flagname}{hint}; --help lists the flags.") from None
  except flags.IllegalFlagValueError as e:
    raise ConfigError(one_line(_illegal_value(str(e), path_arg))) from None
  except flags.Error as e:
    raise ConfigError(one_line(str(e))) from None
  except (AttributeError, KeyError) as e:
    unknown = _unknown_field(argv, path_arg) if path_arg else None
    if unknown:
      raise ConfigError(unknown) from None
    if "get_config" in str(e):
      raise ConfigError(f"--config={path_arg}: the file has no get_config() function; a config "
                        "file defines get_config() returning a ConfigDict.") from None
    raise ConfigError(f"--config={path_arg}: {type(e).__name__}: {e}{_in_config_file(e)}"
                      ) from None
  except SyntaxError as e:
    raise ConfigError(f"--config={path_arg}: SyntaxError: {e.msg} ({e.filename}:{e.lineno})"
                      ) from None
  except OSError as e:
    raise ConfigError(f"--config={path_arg}: cannot load: {one_line(str(e))}") from None
  except Exception as e:  # noqa: BLE001 — the config file's own code failed
    raise ConfigError(f"--config={path_arg}: {type(e).__name__}: {one_line(str(e))}"
                      f"{_in_config_file(e)}") from None
  if "config" in fv and fv["config"].value is not None:
    _check_tuple_overrides(fv["config"].value, argv)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # absl logging reads its flags from flags.FLAGS


def _check_tuple_overrides(config, argv: Sequence[str]) -> None:
  """A tuple field set to a bare value (``--config.hidden=1000``) is an error: ml_collections
  would make it a one-item tuple, one layer where two of 1000 may have been meant."""
  for path, arg in _overrides(argv):
    if "=" not in arg:
      continue
    text = arg.split("=", 1)[1].strip()
    try:
      value = config
      for key in path.split("."):
        value = value[key]
    except (KeyError, TypeError):
      continue
    if isinstance(value, (tuple, list)) and not text.startswith(("(", "[")):
      ex = (text if re.fullmatch(r"[-+\w.]+", text) and not re.search(r"[A-Za-z_]", text)
            else repr(text or "..."))
      raise ConfigError(f"{arg}: config.{path} is a tuple; write it as one, e.g. "
                        f'--config.{path}="({ex},)" for one item or '
                        f'--config.{path}="({ex}, {ex})" for two.')


# ---- --help ------------------------------------------------------------------------------


def config_sources(path: str) -> list[str]:
  """``path`` and the config modules it imports (``from configs import x``), bases first."""
  out: list[str] = []

  def resolve(name: str, near: str) -> str | None:
    for where in (os.path.dirname(near), CONFIGS_DIR):  # a config outside experiments/ too
      candidate = os.path.join(where, name.replace(".", os.sep) + ".py")
      if os.path.isfile(candidate):
        return candidate
    return None

  def visit(p: str) -> None:
    p = os.path.abspath(p)
    if p in out:
      return
    try:
      tree = ast.parse(open(p).read())
    except (OSError, SyntaxError, ValueError):
      return
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.ImportFrom) and (node.module == "configs" or node.level):
        names = [a.name if not node.module or node.module == "configs"
                 else f"{node.module}.{a.name}" for a in node.names]
      elif isinstance(node, ast.Import):
        names = [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("configs.")]
      for name in names:
        found = resolve(name, p)
        if found:
          visit(found)
    out.append(p)

  visit(path)
  return out


_NO_LITERAL = object()


def field_comments(path: str) -> tuple[list[str], dict[str, list[tuple[str, Any, bool]]],
                                       dict[str, list[str]]]:
  """The fields a config file assigns (``c.field = value  # comment``), in order.

  Returns ``(fields in first-assignment order, field -> [(the comment beside an assignment,
  the value it assigns if a literal, whether it sits under an if/for/while/try), ...],
  field -> the comment lines right above its first assignment)``.
  """
  source = open(path).read()
  comments: dict[int, tuple[str, bool]] = {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      inline = bool(tok.line[:tok.start[1]].strip())
      comments[tok.start[0]] = (tok.string.lstrip("#").strip(), inline)
  tree = ast.parse(source)
  parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

  def conditional(node) -> bool:
    while node in parents:
      node = parents[node]
      if isinstance(node, (ast.If, ast.For, ast.While, ast.Try, ast.With, ast.Match)):
        return True
    return False

  def literal(node):
    try:
      return ast.literal_eval(node.value) if node.value is not None else _NO_LITERAL
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
      return _NO_LITERAL

  assigned = []
  for node in ast.walk(tree):
    targets = (node.targets if isinstance(node, ast.Assign)
               else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
    for t in targets:
      if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
        assigned.append((node.lineno, node.end_lineno or node.lineno, t.attr, node))
      elif (isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
            and isinstance(t.slice, ast.Constant) and isinstance(t.slice.value, str)):
        assigned.append((node.lineno, node.end_lineno or node.lineno, t.slice.value, node))
  order, inline, above = [], {}, {}
  for start, end, field, node in sorted(assigned, key=lambda a: a[:3]):
    if field not in order:
      order.append(field)
      block, line = [], start - 1
      while line in comments and not comments[line][1]:
        block.insert(0, comments[line][0])
        line -= 1
      if block:
        above[field] = block
    for line in range(start, end + 1):
      if line in comments and comments[line][1]:
        value = literal(node) if isinstance(node, (ast.Assign, ast.AnnAssign)) else _NO_LITERAL
        inline.setdefault(field, []).append((comments[line][0], value, conditional(node)))
        break
  return order, inline, above


def _comment_for(value, candidates: Sequence[tuple[str, Any, bool]]) -> str | None:
  """The comment of the last assignment of ``value`` itself, else of the last one that is
  not under a branch (a comment on a branch's other value would be wrong here)."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  for comment, assigned, _ in reversed(candidates):
    if assigned is not _NO_LITERAL and _same(assigned, value):
      return comment
  for comment, _, branch in reversed(candidates):
    if not branch:
      return comment
  return None


def _same(a, b) -> bool:
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  if isinstance(a, bool) or isinstance(b, bool):
    return a is b
  try:
    return bool(a == b)
  except Exception:  # noqa: BLE001 — values that do not compare are not the same
    return False


def _docstring_line(path: str) -> str:
  try:
    doc = ast.get_docstring(ast.parse(open(path).read())) or ""
  except (OSError, SyntaxError, ValueError):
    return ""
  return doc.strip().splitlines()[0] if doc.strip() else ""


def describe_config(config, path: str) -> str:
  """The fields of ``config`` with their values and the comments of the files it comes from."""
  order, inline, above, origin = [], {}, {}, {}
  for source in config_sources(path):
    o, i, a = field_comments(source)
    for f in o:
      if f not in order:
        order.append(f)
        origin[f] = source
    for f, candidates in i.items():  # the most derived file's assignments come last
      inline.setdefault(f, []).extend(candidates)
    for f, block in a.items():
      above.setdefault(f, block)
  keys = list(config.keys())
  fields = [f for f in order if f in keys] + sorted(f for f in keys if f not in order)
  width = max([len(f) for f in fields] + [1])
  lines, shown, sources = [], set(), [None]
  for f in fields:
    if origin.get(f, sources[0]) != sources[-1]:
      sources.append(origin.get(f))
      if len(sources) > 2:
        lines += ["", f"  # {os.path.basename(origin.get(f) or '?')}:"]
    block = tuple(above.get(f, ()))
    if block and block not in shown:
      shown.add(block)
      lines += [""] + [f"  # {b}" for b in block]
    value = config[f]
    value = repr(value.to_dict() if hasattr(value, "to_dict") else value)
    note = _comment_for(config[f], inline.get(f, ()))
    comment = f"  # {note}" if note else ""
    lines.append(f"  {f:<{width}} = {value:<14}{comment}".rstrip())
  return "\n".join(lines)


def help_text(fv: flags.FlagValues, own_flags: Sequence[str], doc: str, argv) -> str:
  """``doc``, the script's flags, then the config's fields (see :func:`describe_config`)."""
  path_arg = config_argument(argv)
  if path_arg is None:
    path_arg = DEFAULT_CONFIG
    config = load_config(path_arg)
    title = (f"Fields of the default config {os.path.relpath(path_arg)} (every config starts "
             "from these; choose one with --config=FILE):")
  else:
    config = fv["config"].value
    title = f"Fields of {path_arg} (current values; set one with --config.FIELD=VALUE):"
  lines = [doc.strip(), "", "Flags:"]
  for name in own_flags:
    flag = fv[name]
    default = "" if flag.default is None else f" (default: {flag.default!r})"
    text = re.sub(r";\s*repeat this option to specify a list of values$", "", flag.help)
    lines.append(f"  --{name}: {text}{default}")
  lines += ["", title]
  summary = _docstring_line(path_arg.split(":", 1)[0])
  if summary:
    lines.append(f"  {summary}")
  lines.append(describe_config(config, path_arg.split(":", 1)[0]))
  return "\n".join(lines)


# ---- the command line --------------------------------------------------------------------


def error(message: str) -> None:
  print(f"error: {one_line(message)}", file=sys.stderr)


def run(argv: Sequence[str], define_flags: Callable[[flags.FlagValues, list], None],
        body: Callable[[flags.FlagValues], None], *, doc: str,
        required: Sequence[str] = ("config", "workdir")) -> int:
  """A script's command line: parse ``argv``, answer ``--help``, check, run ``body(flags)``.

  ``define_flags(fv, argv)`` defines the script's flags in the fresh ``fv`` (the config
  flag with ``sys_argv=argv``). Returns the exit code (see the module docstring).
  """
  argv = list(argv)
  wants_help = any(a in HELP_FLAGS for a in argv[1:])
  argv = [argv[0]] + [a for a in argv[1:] if a not in HELP_FLAGS]
  fv = flags.FlagValues()
  define_flags(fv, argv)
  own = [n for n in fv if fv[n].name == n]
  _add_logging_flags(fv)
  try:
    parse(fv, argv)
    if wants_help:
      print(help_text(fv, own, doc, argv))
      return 0
    for name in required:
      if fv[name].value in (None, [], ""):
        if name == "workdir":
          check_workdir(None)
        if name == "config":
          raise ConfigError("--config is required: an experiment config file, e.g. "
                            "--config=experiments/configs/aae_unsupervised.py (--help lists "
                            "its fields).")
        text = re.sub(r";\s*repeat this option to specify a list of values$", "", fv[name].help)
        raise ConfigError(f"--{name} is required: {text}")
    if "workdir" in own:
      check_workdir(fv.workdir)
    body(fv)
  except ConfigError as e:
    error(str(e))
    return 2
  except (data.DataFileError, data.DatasetNotFoundError) as e:
    error(str(e))
    return 1
  except guards.RunStopped as e:  # divergence, a stop signal, a failed checkpoint
    error(str(e))
    return e.exit_code
  return 0
