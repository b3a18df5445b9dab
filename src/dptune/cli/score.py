"""`dptune score`: score an official-format prediction file against a gold file."""


def score() -> None:
    """Score predictions (official SuperGLUE submission jsonl) against a gold jsonl."""
    raise NotImplementedError
