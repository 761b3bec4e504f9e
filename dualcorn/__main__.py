"""``python -m dualcorn`` is the ``dualcorn`` command."""

from dualcorn.cli import main

main()
