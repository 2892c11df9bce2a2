"""A recipe file that calls sys.exit(0) at import (a script's main guard forgotten)."""
import sys

EXPECT = r"InputError: recipe: importing .*exits_at_import.py called sys.exit\(0\)"

sys.exit(0)


def build():
    return {}
