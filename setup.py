"""Build hooks: the one C extension, and the files shipped beside the code; the rest is in pyproject.toml.

``tcpmemlib.parsers._sstok`` is read_ss's C engine (see the file's header). It is optional: without
a C compiler the install still succeeds and read_ss runs its reference engine (``_ss_line``), which
gives the same frames and errors, slower (bench/README.md gives the ratio). tests/test_ss.py checks
that the extension is built where gcc is, and that read_ss works without it.

The report notebooks (``notebooks/*.ipynb``) and the collector (``collect.sh``) live at the top of the
repository, where ``make`` and a reader find them. ``build_py`` copies them into the package as
``tcpmemlib/share/`` so that an installed ``tcpmem report`` and ``tcpmem collector`` have them
(``tcpmemlib.resources`` finds either place; MANIFEST.in keeps them in an sdist).
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHARE = Path("tcpmemlib", "share")


def shared_files() -> dict[Path, Path]:
    """Source file in the repository -> its path inside the package (relative to build_lib)."""
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not (ROOT / "collect.sh").is_file() or not notebooks:
        raise SystemExit(
            f"setup.py: collect.sh and notebooks/*.ipynb must be beside setup.py in {ROOT}: "
            "an installed tcpmem needs them to build reports"
        )
    files = {ROOT / "collect.sh": SHARE / "collect.sh"}
    files.update({nb: SHARE / "notebooks" / nb.name for nb in notebooks})
    return files


class BuildPyWithShare(build_py):
    """build_py, plus collect.sh and the notebooks copied into tcpmemlib/share/."""

    def run(self) -> None:
        super().run()
        for source, rel in shared_files().items():
            target = Path(self.build_lib) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)  # keeps collect.sh's mode (0755)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        extra = [str(Path(self.build_lib) / rel) for rel in shared_files().values()]
        return [*super().get_outputs(include_bytecode), *extra]


setup(
    cmdclass={"build_py": BuildPyWithShare},
    ext_modules=[
        Extension(
            "tcpmemlib.parsers._sstok",
            sources=["tcpmemlib/parsers/_sstok.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
