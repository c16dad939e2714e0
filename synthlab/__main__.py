"""``python -m synthlab`` is the ``synthlab`` command (used by LocalBackend)."""

from synthlab.cli import main

main()
