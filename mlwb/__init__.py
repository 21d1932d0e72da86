"""The shared spine of ml-workbench: settings, storage, users, audit, registry access, errors.

Imports point one way: this package imports none of ``api``, ``workbench``, ``jobs``,
``experiments``, ``reports`` or ``wb``. Everything those need in common lives here.
"""

__version__ = "0.1.0"
