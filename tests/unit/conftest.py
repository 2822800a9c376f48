"""Unit tests import the collection as ansible_collections.nativearm.binfmt."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_env import collections_path  # noqa: E402

sys.path.insert(0, collections_path())
