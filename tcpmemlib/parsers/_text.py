"""Old name of ``tcpmemlib.parsers.text``, kept until every importer uses the new one."""

from tcpmemlib.parsers.text import read_text, split_lines

__all__ = ["read_text", "split_lines"]
