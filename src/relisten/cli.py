"""The ``relisten`` command."""


def main() -> None:
    raise SystemExit("not yet")
