"""Running one experiment: ``train(cfg)``, building its parts, writing its run folder."""
