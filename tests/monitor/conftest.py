"""Makes tests/monitor/watch_training.py (the shared small trainings) importable under importlib mode."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
