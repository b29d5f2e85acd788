"""``rnnbench-train``: one training run, configured with Hydra (see ``conf/train.yaml``)."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..errors import RnnbenchError
from ..train import train
from . import conf_dir

log = logging.getLogger("rnnbench")


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def _app(cfg: DictConfig) -> float | None:
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        summary = train(cfg, run_dir)
    except RnnbenchError as exc:
        log.error("%s", exc)
        if HydraConfig.get().mode.name == "RUN":
            sys.exit(2)
        raise
    print(
        f"{summary['dataset']}/{summary['cell']}: {summary['status']} ({summary['stop_reason']}), "
        f"best epoch {summary['best_epoch']}: train {summary['train_nll']}, valid {summary['valid_nll']}, "
        f"test {summary['test_nll']}  [{run_dir}]"
    )
    return summary["valid_nll"]


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
