"""``python -m wb`` is ``wb``."""

from wb.main import cli

cli()
