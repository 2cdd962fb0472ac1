"""One parser module per snapshot file kind. Each exposes ``parse(source) -> DataFrame``.

``source`` is a path (``X`` or ``X.gz``) or the file's text. See each module's docstring for its schema.
"""
