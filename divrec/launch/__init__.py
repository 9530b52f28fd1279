"""Launching jobs: DDP relaunch guards and per-GPU claims for sweeps."""
