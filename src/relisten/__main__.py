"""``python -m relisten`` is the ``relisten`` command."""

from relisten.cli import main

main()
