"""The one place Decodex's version is written (read by pyproject.toml, ``decodex --version`` and
``decodex.__version__``)."""

__version__ = "0.2.0"
