"""``python -m driftnet`` runs the command line."""

from driftnet.cli import main

main()
