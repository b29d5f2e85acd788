"""The configuration schema of ``rnnbench-train``, and the checks of a configuration against it.

Every key of ``conf/train.yaml`` outside the config groups, with its type, default, description
and the values it accepts -- the one place they are written.

* Hydra composes ``conf/train.yaml`` on top of :class:`TrainConfig`, registered in Hydra's
  ConfigStore as ``rnnbench_schema``: the defaults below are the defaults of every run, and a key
  the schema lacks cannot be added to ``train``, ``search`` or ``optim``, not even with ``+``.
* :func:`validate_config` (below) checks each value with the field's ``check`` (a bad
  one is named with the field's ``expected``) before anything is written.
* ``rnnbench-train --help`` prints each key's type, default and description from here.

Every field is typed ``Any`` for OmegaConf and checked by ``check`` instead: OmegaConf's float
fields would turn an integer such as ``train.weight_noise=0`` into ``0.0`` and change the
fingerprint of runs made before the schema (:func:`rnnbench.runs.config_fingerprint`).

The groups ``dataset`` and ``cell`` stay open: a corpus or cell of one's own (``--config-dir``)
may carry keys of its own.  Their keys are described by the comments of their files
(``conf/dataset/<name>.yaml``, ``conf/cell/<name>.yaml``), which ``--help`` shows.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Callable, Iterator, Mapping

from omegaconf import DictConfig

from .errors import ConfigError, RnnbenchError

SEED_MAX = 2**63 - 3  # torch's generators take seeds below 2**64; a run also uses seed + 1 and seed + 2
PAPER_DRAWS = 10  # the paper's learning-rate search: draws 0..9


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def key(default: Any, type_: str, help_: str, check: Callable[[Any], bool] | None = None, expected: str = "",
        **more) -> Any:
    """A schema field: its default, its type in words, what it means, and the check of its value."""
    return field(default=default, metadata={"type": type_, "help": help_, "check": check, "expected": expected,
                                            **more})


@dataclass
class TrainSchema:
    batch_size: Any = key(1, "int", "sequences per update; the paper (and its released configs) used 1",
                          lambda v: _int(v) and v >= 1, "an integer >= 1")
    max_epochs: Any = key(500, "int", "the most epochs a run trains; the paper's released configs allow 500",
                          lambda v: _int(v) and v >= 1,
                          "an integer >= 1 (to see a run's results without training it, use rnnbench-report)")
    patience: Any = key(20, "int", "early stopping: epochs without a better validation NLL",
                        lambda v: _int(v) and v >= 1, "an integer >= 1")
    clip_norm: Any = key(1.0, "float or null", "gradient-norm clipping (null: none)",
                         lambda v: v is None or (_num(v) and v > 0), "a positive number or null")
    weight_noise: Any = key(0.075, "float", "std of the Gaussian weight noise drawn for every update (0 = off)",
                            lambda v: _num(v) and v >= 0, "a finite number >= 0")
    skip_nonfinite: Any = key(False, "bool",
                              "true: an update whose gradient overflows is skipped (counted in metrics.csv) instead "
                              "of ending the run as diverged; a non-finite loss, or half an epoch's updates "
                              "skipped, still does", lambda v: isinstance(v, bool), "true or false")
    bucket: Any = key(True, "bool", "group sequences of similar length into batches (less padding)",
                      lambda v: isinstance(v, bool), "true or false")
    eval_batch_frames: Any = key(4096, "int",
                                 "evaluation batches hold at most this many padded frames per stacked member "
                                 "(larger tensors than the caches only cost page faults)",
                                 lambda v: _int(v) and v >= 1, "an integer >= 1")
    eval_max_waste: Any = key(0.1, "float or null",
                              "... and at most this fraction of padding (sequences sorted by length); null: no cap",
                              lambda v: v is None or (_num(v) and 0 <= v < 1), "a number in [0, 1) or null")
    eval_train_every: Any = key(10, "int or null",
                                "training-split NLL (noise-free) at epoch 1 and every this many epochs, for the "
                                "curves (0 or null: only at the end); validation NLL is computed every epoch, test "
                                "NLL never during training: the best-validation weights are scored on train and "
                                "test when the run ends",
                                lambda v: v is None or (_int(v) and v >= 0), "an integer >= 0 (0 or null: only at the end)")
    order_seed: Any = key(None, "int or null",
                          "seed of the batch order; null: seed.  Seeds that share it share the data order (and can "
                          "train as one stack: initial weights and weight noise stay their own)",
                          lambda v: v is None or (_int(v) and 0 <= v <= SEED_MAX),
                          f"an integer from 0 to {SEED_MAX} or null (= seed)")
    max_minutes: Any = key(None, "float or null", "wall-clock budget of this invocation; the run stays resumable",
                           lambda v: v is None or (_num(v) and v > 0), "a positive number or null")
    threads: Any = key(1, "int or null",
                       "torch threads per run: these small models are bound by per-op overhead, and more threads "
                       "slow them down (run several runs in parallel instead); null: all cores",
                       lambda v: v is None or (_int(v) and v >= 1), "an integer >= 1 or null (all cores)")
    device: Any = key("cpu", "str", "cpu, cuda (cuda:N) or auto",
                      lambda v: isinstance(v, str) and (v in ("cpu", "cuda", "auto") or v.startswith("cuda:")),
                      "cpu, cuda, cuda:N or auto")
    resume: Any = key(True, "bool", "continue a run found in the run directory; false: start it afresh",
                      lambda v: isinstance(v, bool), "true or false")


@dataclass
class SearchSchema:
    draw: Any = key(None, "int or null",
                    "index k of the learning-rate draw lr_k = exp(U(log_low, log_high)), a pure function of "
                    f"(seed, k); the paper's search is draws 0 to {PAPER_DRAWS - 1} (hparams_search=paper_lr)",
                    lambda v: v is None or (_int(v) and v >= 0), "an integer >= 0 (the paper's draws are 0 to 9)")
    seed: Any = key(2014, "int", "seed of the learning-rate draws",
                    lambda v: _int(v) and 0 <= v <= SEED_MAX, f"an integer from 0 to {SEED_MAX}")
    log_low: Any = key(-12, "float", "lower end of log(lr) of the draws", _num, "a finite number")
    log_high: Any = key(-6, "float", "upper end of log(lr) of the draws", _num, "a finite number")
    halving: Any = key(None, "mapping or null",
                       "successive halving of the draws {epochs, keep, min_keep, margin} "
                       "(hparams_search=paper_lr_halving); null: the paper's full search")


@dataclass
class OptimSchema:
    name: Any = key("rmsprop", "str", "the optimizer: rmsprop (torch.optim.RMSprop)",
                    lambda v: v == "rmsprop", "'rmsprop'")
    lr: Any = key(1.0e-3, "float",
                  "learning rate; the paper draws it from exp(U(-12, -6)) = [6.1e-6, 2.5e-3] (search.draw)",
                  lambda v: _num(v) and v > 0, "a positive number")
    alpha: Any = key(0.9, "float", "decay of the mean square (Tieleman & Hinton's 0.9; PyTorch's default is 0.99)",
                     lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)")
    eps: Any = key(1.0e-6, "float", "added to the root mean square", lambda v: _num(v) and v > 0, "a positive number")
    momentum: Any = key(0.0, "float", "momentum", lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)")
    centered: Any = key(False, "bool", "centered RMSProp (normalise by the variance, not the mean square)",
                        lambda v: isinstance(v, bool), "true or false")


@dataclass
class TrainConfig:
    """The root of ``rnnbench-train``'s configuration (the key order is that of ``config.yaml``)."""
    dataset: Any = key(MISSING, "group", "the corpus: conf/dataset/<name>.yaml (dataset=NAME)")
    cell: Any = key(MISSING, "group", "the recurrent cell: conf/cell/<name>.yaml (cell=NAME)")
    optim: OptimSchema = field(default_factory=OptimSchema, metadata={"help": "the optimizer (optim=rmsprop)"})
    seed: Any = key(0, "int", "seed of the initial weights, the weight noise (seed + 2) and the batch order "
                              "(seed + 1, unless train.order_seed is set)",
                    lambda v: _int(v) and 0 <= v <= SEED_MAX, f"an integer from 0 to {SEED_MAX}")
    data_root: Any = key("${oc.env:RNNBENCH_DATA,null}", "str or null",
                         "folder holding polyphonic/*.mat and speech/ (layout of the reference copy); null: "
                         "$RNNBENCH_DATA, then the download cache data/ (or $RNNBENCH_CACHE)",
                         lambda v: v is None or isinstance(v, str), "a folder or null")
    train: TrainSchema = field(default_factory=TrainSchema, metadata={"help": "the training recipe"})
    search: SearchSchema = field(default_factory=SearchSchema, metadata={"help": "the paper's learning-rate search"})


GROUPS = ("dataset", "cell", "optim")


def schema_fields(cls=TrainConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, dataclass field)`` of every leaf of the schema, in order."""
    for f in fields(cls):
        sub = f.default_factory() if f.default_factory is not MISSING else None  # type: ignore[misc]
        if is_dataclass(sub):
            yield from schema_fields(type(sub), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def schema_keys() -> list[str]:
    return [k for k, f in schema_fields() if f.metadata.get("type") != "group"]


# --------------------------------------------------------------------------- checking a configuration

def _get(cfg: Mapping, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


_ABSENT = object()


def _resolution_error(key: str, exc: Exception) -> RnnbenchError:
    """The error to show for a value that cannot be computed: rnnbench's own (a resolver's
    ConfigError, say, somewhere in the exception's chain) as it is, else one line naming ``key``."""
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        if isinstance(e, RnnbenchError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"config value {key} cannot be computed: {first}")


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first invalid value.  The keys of the schema
    (:mod:`rnnbench.schema`) are checked with its checks (a key absent from ``cfg``, as in a run
    made before it existed, stands for its default); the groups' keys rnnbench needs, here."""
    def need(key: str, ok, what: str, default: Any = _ABSENT):
        try:
            value = _get(cfg, key, default)
        except Exception as exc:  # (an interpolation that fails: search.draw=-1 in optim.lr's draw, say)
            raise _resolution_error(key, exc) from exc
        if value is _ABSENT:
            value = None
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise ConfigError(f"config value {key}={value!r} is invalid: expected {what}")

    fields_ = list(schema_fields())
    # (search first: optim.lr is drawn from it, and its own message says more than the draw's)
    for key, f in sorted(fields_, key=lambda kf: not kf[0].startswith("search.")):
        check = f.metadata.get("check")
        if check is not None:
            need(key, check, f.metadata["expected"], f.default)
    need("cell.units", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
    need("dataset.task", lambda v: v in ("music", "speech"), "'music' or 'speech'")
    from .cells import cell_class
    from .data.corpus import dataset_builder
    from .search import halving_settings

    halving_settings(cfg)  # (search.halving: its keys and values)
    cell_class(cfg.cell)  # (a cell or corpus named by import path: imported and checked before anything is written)
    if _get(cfg, "dataset._target_") is not None:
        dataset_builder(cfg.dataset)


def register() -> None:
    """Put the schema in Hydra's ConfigStore (``conf/train.yaml`` names it first in its defaults)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="rnnbench_schema", node=TrainConfig)


register()
