"""A build() that calls sys.exit() (argument parsing inside build)."""
import sys

EXPECT = r"InputError: recipe: .*exits_in_build.py:build\(\) called sys.exit\(2\)"


def build():
    sys.exit(2)
