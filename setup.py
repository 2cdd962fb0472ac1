"""Build hook for the one C extension; everything else is declared in pyproject.toml.

``tcpmemlib.parsers._sstok`` is read_ss's C engine (see the file's header). It is optional: without
a C compiler the install still succeeds and read_ss runs its reference engine (``_ss_line``), which
gives the same frames and errors, slower (bench/README.md gives the ratio). tests/test_ss.py checks
that the extension is built where gcc is, and that read_ss works without it.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tcpmemlib.parsers._sstok",
            sources=["tcpmemlib/parsers/_sstok.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
