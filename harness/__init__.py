"""edge-VLM bench: benchmark vision-language models on edge boards.

This package root stays dependency-free: ``harness.runner`` ships to boards inside a
zipapp together with this file.
"""

__version__ = "0.1.0"
