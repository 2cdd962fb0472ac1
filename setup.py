"""Build hook for the one C extension; everything else is declared in pyproject.toml.

``tcpmemlib.parsers._sstok`` is read_ss's field extractor in C (see the file's header). It is
optional: without a C compiler the install still succeeds and read_ss uses its numpy path, which
gives the same frames, slower (tests/test_ss_fast.py checks the extension is built where gcc is).
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
