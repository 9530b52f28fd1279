"""Hydra entry point: `python train.py [overrides]`, `python train.py +experiment=NAME`,
`python train.py -m key=a,b`. The work is in divrec.run.train."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from divrec.run.train import run

    return run(cfg)


if __name__ == "__main__":
    main()
