"""``rnnbench-train``'s command line checked before Hydra acts on it, and its ``--help``.

The configuration is composed once here, and a command that cannot run is refused with one line
(exit 2) before Hydra writes anything (no run directory, no ``.hydra/``).  Refused here:

* a key neither the schema (:mod:`rnnbench.schema`) nor the chosen group files know, even with
  ``+`` (the line names the nearest known keys);
* a group value with no file (``cell=gur``: the line names the group's options);
* a value the schema's checks refuse (:func:`rnnbench.schema.validate_config`), for every value of
  a sweep;
* a run (or sweep) directory that cannot be created.

Also here: ``--help``, which lists every key with its type, default and description.
"""

from __future__ import annotations

import difflib
import errno
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, RnnbenchError
from . import conf_dir

# Keys a group's file may leave out that its code reads when they are given (with "+").
# key: (the dataset kind it belongs to, what it means)
OPTIONAL_KEYS = {"dataset.split_kwargs": ("torchaudio", "per-split keyword arguments of the torchaudio class, "
                                                       "{train: {...}, valid: {...}, test: {...}}")}


def optional_keys(cfg: DictConfig) -> dict[str, str]:
    """The optional keys that apply to ``cfg`` (its dataset's kind), with their meaning."""
    kind = OmegaConf.select(cfg, "dataset.kind", default=None)
    return {k: what for k, (for_kind, what) in OPTIONAL_KEYS.items() if for_kind == kind}
# Flags after which Hydra does something else than training: left to Hydra (--cfg and --info: the
# configuration is checked, nothing is made).
_HYDRA_ONLY = ("hydra_help", "shell_completion", "version", "experimental_rerun")
_SHOW_ONLY = ("cfg", "info")


def hydra_args(argv: list[str]):
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_args(argv)


class Composer:
    """Composes ``rnnbench-train``'s configuration as Hydra will (same search path, same
    ``--config-dir``), without running anything."""

    def __init__(self, args):
        from hydra._internal.hydra import Hydra
        from hydra._internal.utils import create_config_search_path
        from hydra.core.global_hydra import GlobalHydra

        import rnnbench  # noqa: F401  (the schema and the resolvers)

        path = args.config_path if args.config_path is not None else conf_dir()
        search_path = create_config_search_path(os.path.abspath(path))
        if args.config_dir is not None:
            extra = os.path.abspath(args.config_dir)
            if not os.path.isdir(extra):
                raise ConfigError(f"--config-dir {args.config_dir!r} is not a folder")
            search_path.prepend(provider="command-line", path=f"file://{extra}")
        GlobalHydra.instance().clear()
        self.hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
        self.config_name = args.config_name or "train"
        self.multirun = bool(args.multirun)

    def close(self) -> None:
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()

    def options(self, group: str) -> list[str]:
        try:
            return sorted(self.hydra.config_loader.get_group_options(group))
        except Exception:  # (not a group)
            return []

    def compose(self, overrides: list[str], run_mode=None) -> DictConfig:
        from hydra.errors import ConfigCompositionException, MissingConfigException
        from hydra.types import RunMode

        mode = run_mode or (RunMode.MULTIRUN if self.multirun else RunMode.RUN)
        try:
            return self.hydra.compose_config(self.config_name, overrides, run_mode=mode, from_shell=True,
                                             with_log_configuration=False)
        except MissingConfigException as exc:
            raise self._missing(exc, overrides) from None
        except ConfigCompositionException as exc:
            raise self._composition(exc, overrides) from None

    def _missing(self, exc, overrides: list[str]) -> ConfigError:
        missing = str(getattr(exc, "missing_cfg_file", "") or "")
        group, _, name = missing.rpartition("/")
        options = list(getattr(exc, "options", None) or self.options(group) if group else [])
        if group and options:
            near = difflib.get_close_matches(name, options, n=1)
            hint = f" (did you mean {group}={near[0]}?)" if near else ""
            return ConfigError(f"{group}={name}: no such {group.split('/')[-1]}{hint}; expected one of "
                               f"{', '.join(options)}")
        return ConfigError(_first_line(exc))

    def _composition(self, exc, overrides: list[str]) -> ConfigError:
        import re

        text = str(exc)
        m = re.search(r"An item is already at '([^']+)'", text)
        if m:
            return ConfigError(f"+{m.group(1)}: {m.group(1)} is already a key: set it without the '+' "
                               f"({m.group(1)}=VALUE)")
        m = re.match(r"Could not override '([^']+)'", text)
        if m:
            key = m.group(1)
            return unknown_key(key, known_keys(self.compose(_without(overrides, key))))
        cause = exc.__cause__ or exc.__context__
        return ConfigError(_first_line(exc) + (f": {_first_line(cause)}" if cause is not None else ""))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _without(overrides: list[str], key: str) -> list[str]:
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]


def _leaves(node: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{prefix}{k}"
            yield from _leaves(v, f"{prefix}{k}.")


def known_keys(cfg: DictConfig) -> list[str]:
    """Every key of a composed configuration (without ``hydra``), and the optional ones."""
    from ..schema import schema_keys

    task = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    return sorted(set(_leaves(task)) | set(schema_keys()) | set(optional_keys(cfg)))


def _suggestions(known: list[str]) -> list[str]:
    """The keys worth suggesting: the top-level ones and every key below them that is not a node
    of the schema or a group (``train``, ``dataset``: no value of their own)."""
    nodes = {k.rsplit(".", 1)[0] for k in known if "." in k}
    return [k for k in known if k not in nodes]


def unknown_key(key: str, known: list[str]) -> ConfigError:
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    known = _suggestions(known) if "." in key else known
    near = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if len(near) < 3:  # then the other keys of the same node
        near += [k for k in known if (k.rsplit(".", 1)[0] if "." in k else "") == parent and k not in near][:6 - len(near)]
    return ConfigError(f"unknown config key {key!r}: not in the schema nor in the config files; nearest known "
                       f"keys: {', '.join(near) if near else '(none)'} (rnnbench-train --help lists them all)")


def _added_keys(parsed) -> list[str]:
    """The keys the command line adds with ``+`` or ``++`` (outside ``hydra``)."""
    return [o.key_or_group for o in parsed if (o.is_add() or o.is_force_add()) and not o.key_or_group.startswith("hydra")
            and o.package is None]


def check_added(added: list[str], base: DictConfig, groups: set[str]) -> None:
    """Each key added with ``+``/``++`` must be known: in the schema, in the group files as composed
    without the additions, an optional key, or inside a mapping the files already hold (such as
    ``dataset.kwargs``)."""
    known = known_keys(base)
    for key in added:
        if key in groups or key in known:
            continue
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.select(base, parent) if parent else None
        if parent and parent not in ("dataset", "cell", "optim", "train", "search") and isinstance(node, DictConfig):
            continue
        raise unknown_key(key, known)


def check_creatable(path: str, what: str) -> None:
    """``path`` can be made a directory: it is one, or it can be created (tried, then removed)."""
    p = Path(path).expanduser()
    if p.is_dir():
        probe = p / f".rnnbench-write-test-{os.getpid()}"
        try:
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"{what} {str(p)!r} cannot be written ({exc.strerror or exc}): expected a folder "
                              f"files can be written in") from None
        return
    made: list[Path] = []
    cur = p.absolute()
    while not cur.exists() and cur != cur.parent:
        made.append(cur)
        cur = cur.parent
    try:
        for d in reversed(made):
            d.mkdir()
        probe = p / f".rnnbench-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOTDIR, errno.EEXIST) or (cur.exists() and not cur.is_dir()):
            reason = f"{str(cur)!r} is a file, not a folder"
        raise ConfigError(f"{what} {str(p)!r} cannot be created ({reason}): expected a folder that can be made "
                          f"there") from None
    finally:
        for d in made:
            try:
                d.rmdir()
            except OSError:
                pass


def _sweep_values(override) -> list[str] | None:
    """The values of a sweep override as override strings, or None when they cannot be listed here."""
    try:
        return [str(v) for v in override.sweep_string_iterator()]
    except Exception:
        return None


def _with_value(override, value: str) -> str:
    return f"{override.get_key_element()}={value}"


def check(argv: list[str], dirs: bool = True) -> DictConfig | None:
    """Compose the command line's configuration and check it (see the module's docstring).
    Returns the composed configuration (with ``hydra``) of the first job, or ``None`` when
    Hydra is asked for something else than training (``--cfg``, ``--info``, ...)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from ..schema import PAPER_DRAWS
    from ..schema import _resolution_error, validate_config

    args = hydra_args(argv)
    if any(getattr(args, a, None) for a in _HYDRA_ONLY):
        return None
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(args.overrides)
    except OverrideParseException as exc:
        raise ConfigError(f"cannot read the override: {_first_line(exc)}") from None
    composer = Composer(args)
    try:
        groups = {o.key_or_group for o in parsed if composer.options(o.key_or_group)}
        sweeps = [o for o in parsed if o.is_sweep_override()]
        if sweeps and not args.multirun:
            raise ConfigError(f"{sweeps[0].input_line}: a sweep needs -m (--multirun)")
        first = [_with_value(o, (_sweep_values(o) or [None])[0]) if o.is_sweep_override() and _sweep_values(o)
                 else o.input_line for o in parsed]
        cfg = composer.compose(first)
        # the sweeper's own parameters (an experiment's), unless the command line sets the same key
        params = OmegaConf.select(cfg, "hydra.sweeper.params") if args.multirun else None
        given = {o.key_or_group for o in parsed}
        if params:
            extra = [f"{k}={v}" for k, v in params.items() if k not in given]
            try:
                more = parser.parse_overrides(extra)
            except OverrideParseException:
                more = []
            sweeps += [o for o in more if o.is_sweep_override()]
            groups |= {o.key_or_group for o in more if composer.options(o.key_or_group)}
        added = _added_keys(parsed)
        if added:
            base = composer.compose([o for o, p in zip(first, parsed) if not (p.is_add() or p.is_force_add())
                                     or p.key_or_group.startswith("hydra") or p.package is not None])
            check_added(added, base, groups)
        _validate(cfg, validate_config, _resolution_error)
        # every other value of each sweep, the others at their first value
        for o in sweeps:
            values = _sweep_values(o)
            if values is None:
                continue
            # (a sweep of the command line was composed at its first value; one of the sweeper's
            # parameters was not: each of its values is checked)
            for v in values[1:] if o in parsed else values:
                if o.key_or_group in groups:
                    options = composer.options(o.key_or_group)
                    if v not in options:
                        raise composer._missing(type("E", (), {"missing_cfg_file": f"{o.key_or_group}/{v}",
                                                               "options": options})(), [])
                    one = composer.compose([_with_value(p, v) if p is o else q for p, q in zip(parsed, first)]
                                           if o in parsed else first + [_with_value(o, v)])
                    _validate(one, validate_config, _resolution_error)
                else:
                    one = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
                    try:
                        OmegaConf.update(one, o.key_or_group, yaml_value(v), merge=False, force_add=True)
                    except Exception as exc:
                        raise ConfigError(f"{o.key_or_group}={v}: {_first_line(exc)}") from None
                    _validate(one, validate_config, _resolution_error)
        draws = {int(d) for d in _all_values(cfg, sweeps, "search.draw") if str(d).lstrip("-").isdigit()}
        beyond = sorted(d for d in draws if d >= PAPER_DRAWS)
        if beyond:
            print(f"rnnbench-train: note: search.draw={','.join(map(str, beyond))} is not one of the paper's "
                  f"{PAPER_DRAWS} draws (0 to {PAPER_DRAWS - 1}); its learning rate comes from the same distribution",
                  file=sys.stderr)
        from hydra.core.hydra_config import HydraConfig

        key, what = ("hydra.sweep.dir", "sweep directory") if args.multirun else ("hydra.run.dir", "run directory")
        before = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(cfg)  # (for a directory that uses ${hydra:...})
        try:
            where = str(OmegaConf.select(cfg, key))
        except Exception as exc:
            raise _resolution_error(key, exc) from exc
        finally:
            HydraConfig.instance().cfg = before
        if dirs and not any(getattr(args, a, None) for a in _SHOW_ONLY):
            check_creatable(where, f"{what} {key}")
        return cfg
    finally:
        composer.close()


def yaml_value(text: str) -> Any:
    """A sweep's value as Hydra gives it to the job (``1`` an int, ``null`` None, ``a`` a string)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(f"k={text}").value()


def _all_values(cfg: DictConfig, sweeps, key: str) -> list:
    for o in sweeps:
        if o.key_or_group == key:
            return _sweep_values(o) or []
    try:
        value = OmegaConf.select(cfg, key)
    except Exception:
        return []
    return [] if value is None else [value]


def _validate(cfg: DictConfig, validate_config, resolution_error) -> None:
    try:
        validate_config(cfg)
    except RnnbenchError:
        raise
    except Exception as exc:  # (a value that cannot be computed: one line all the same)
        raise resolution_error("?", exc) from exc


# --------------------------------------------------------------------------- --help

HELP_HEAD = """\
rnnbench-train: one training run, or with -m a sweep of runs (Hydra multirun).

usage: rnnbench-train [-m] [--config-dir DIR] [GROUP=OPTION ...] [KEY=VALUE ...]

  rnnbench-train dataset=jsb cell=gru optim.lr=1e-3 train.max_epochs=5 seed=0
  rnnbench-train -m experiment=quick            the README's quick study
  rnnbench-train dataset=fsdd --help            the keys as that command would set them

A key or group option that is not listed below is refused (one line, exit 2), even with '+'.
Exit status of a single run: 0 finished (or already finished), 2 refused or failed (one line
naming the culprit; a refused run leaves nothing on disk), 3 diverged, 4 another process is
training the run.  Hydra's own flags: rnnbench-train --hydra-help; the resolved configuration:
rnnbench-train --cfg job [...].
"""

# Descriptions of group keys their files leave without a comment.
GROUP_KEY_HELP = {
    "dataset.name": "the corpus's name: its runs are filed under runs/<name>/",
    "dataset.kind": "how the corpus is read (rnnbench.data.DATASET_KINDS)",
    "dataset.task": "music (binary piano rolls) or speech (raw samples)",
    "cell.name": "the cell's name: its runs are filed under runs/<dataset>/<name>/",
    "cell.sizes": "units per task, the paper's Table 1",
    "cell.units": "units of the recurrent layer (default: the paper's size for the dataset's task)",
    "cell._target_": "a cell class of one's own, module.Class",
}


def yaml_comments(path: Path) -> tuple[str, dict[str, str]]:
    """A group file's description (its leading comment) and the comment of each top-level key
    (the rest of the key's line, and the indented comment lines that follow it)."""
    import re

    head: list[str] = []
    keys: dict[str, str] = {}
    last = None
    started = False
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z_][\w]*):(.*)$", line)
        if m:
            started = True
            last = m.group(1)
            value = m.group(2)
            cut = re.search(r"\s#\s?(.*)$", value)
            keys[last] = cut.group(1).strip() if cut and "'" not in value[:cut.start()].replace("''", "") else ""
            continue
        c = re.match(r"^(\s+)#\s?(.*)$", line)
        if c and last is not None:
            keys[last] = f"{keys[last]} {c.group(2).strip()}".strip()
            continue
        if line.startswith("#") and not started and not line.startswith("# @package"):
            head.append(line.lstrip("#").strip())
        elif line.strip() and not line.startswith(" "):
            last = None
    return " ".join(h for h in head if h), keys


def _group_file(group: str, option: str, config_dir: str | None) -> Path | None:
    for root in ([config_dir] if config_dir else []) + [conf_dir()]:
        p = Path(root) / group / f"{option}.yaml"
        if p.is_file():
            return p
    return None


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return OmegaConf.to_yaml(OmegaConf.create(value)).strip().replace("\n", ", ") if value else str(value)
    return str(value)


def _typename(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", dict: "mapping", list: "list"}.get(
        type(value), type(value).__name__)


def help_text(argv: list[str]) -> str:
    """``--help``: the groups and their options, then every key with its type, its value under the
    command line's overrides (the defaults, without any) and what it means."""
    import textwrap

    from ..schema import OptimSchema, _get, schema_fields

    args = hydra_args([a for a in argv if a not in ("--help", "-h")])
    rest = [a for a in argv if a not in ("--help", "-h")]
    cfg = check(rest, dirs=False)
    if cfg is None:
        cfg = check([a for a in rest if a.startswith("-") is False], dirs=False)
    composer = Composer(args)
    try:
        group_names = ["dataset", "cell", "optim", "hparams_search", "experiment", "hydra/launcher"]
        options = {g: composer.options(g) for g in group_names}
    finally:
        composer.close()
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices) if "hydra" in cfg else {}
    out = [HELP_HEAD, "groups (GROUP=OPTION; the chosen one in [brackets]):"]
    for g in group_names:
        chosen = choices.get(g)
        opts = [f"[{o}]" if o == chosen else o for o in options[g]]
        if chosen in (None, "null") and g in ("hparams_search", "experiment"):
            opts = ["[null]"] + opts
        out.append(textwrap.fill(", ".join(opts), width=100, initial_indent=f"  {g:<16}",
                                 subsequent_indent=" " * 18))
    task = OmegaConf.to_container(cfg, resolve=False)
    resolved = {}
    try:
        resolved = OmegaConf.to_container(OmegaConf.create({k: v for k, v in task.items() if k != "hydra"}),
                                          resolve=True)
    except Exception:
        pass

    def entry(k: str, type_: str, value: Any, text: str) -> None:
        out.append(f"  {k}  ({type_}, default {_show(value)})")
        out.append(textwrap.fill(text or "-", width=100, initial_indent=" " * 6, subsequent_indent=" " * 6))

    out.append("")
    out.append("keys (KEY=VALUE; type, default under these overrides; meaning):")
    optim_keys = {f"optim.{f.name}" for f in __import__("dataclasses").fields(OptimSchema)}
    for g in ("dataset", "cell"):
        option = choices.get(g)
        path = _group_file(g, option, args.config_dir) if option else None
        head, comments = yaml_comments(path) if path is not None else ("", {})
        out.append("")
        out.append(f"{g}={option}: {head}" if head else f"{g}={option}:")
        for k, v in (task.get(g) or {}).items():
            dotted = f"{g}.{k}"
            shown = _get(resolved, dotted) if resolved else v
            entry(dotted, _typename(shown), shown, comments.get(k) or GROUP_KEY_HELP.get(dotted, ""))
        for k, what in optional_keys(cfg).items():
            if k.startswith(g + ".") and k.split(".", 1)[1] not in (task.get(g) or {}):
                entry(k, "optional", None, what + "; give it with '+'")
    section = None
    for k, f in schema_fields():
        if f.metadata.get("type") == "group":
            continue
        top = k.split(".")[0] if "." in k else ""
        if top != section:
            section = top
            out.append("")
            out.append(f"{top}:" if top else "run:")
        shown = _get(resolved, k) if resolved else _get(task, k)
        entry(k, f.metadata["type"], shown, f.metadata["help"]
              + (f" (values: {f.metadata['expected']})" if f.metadata.get("expected") and k not in optim_keys
                 and "null" not in f.metadata["type"] and f.metadata["type"] not in ("bool",) else ""))
    return "\n".join(out) + "\n"
