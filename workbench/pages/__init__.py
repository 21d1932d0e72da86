"""Workbench pages: thin scripts that read widgets, call ``workbench.queries``, render."""
