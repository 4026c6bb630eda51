"""The runner: ships to every board as one zipapp; standard library only at import time."""

RUNNER_VERSION = "0.1.0"
