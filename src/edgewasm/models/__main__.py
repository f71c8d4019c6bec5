"""``python -m edgewasm.models``: the ``edgewasm models`` commands, usable before the main CLI is wired."""

from ._cli import models

if __name__ == "__main__":
    models(prog_name="python -m edgewasm.models")
