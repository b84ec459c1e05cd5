"""Builds the optional Cython hot path (native/_native.pyx → mediaproxy._native).

Everything else is in setup.cfg. When Cython or a C compiler is missing, or
the build fails, the package installs without the extension and
``mediaproxy.hotpath`` uses its pure-Python reference (identical results).
Set MEDIAPROXY_NO_NATIVE=1 to skip the extension on purpose.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that never fails the install: the extension is an optimisation."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # any build failure means "pure Python"
            self._skip(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skip(exc)

    @staticmethod
    def _skip(exc):
        sys.stderr.write(f"mediaproxy: not building the native hot path ({exc}); using pure Python\n")


def extensions():
    if os.environ.get("MEDIAPROXY_NO_NATIVE"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        sys.stderr.write("mediaproxy: Cython not available; using the pure-Python hot path\n")
        return []
    from setuptools import Extension

    ext = Extension("mediaproxy._native", ["native/_native.pyx"], extra_compile_args=["-O2"])
    try:
        return cythonize([ext], compiler_directives={"language_level": "3"}, quiet=True)
    except Exception as exc:
        sys.stderr.write(f"mediaproxy: cythonize failed ({exc}); using the pure-Python hot path\n")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
