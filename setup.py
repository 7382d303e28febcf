"""The optional C extension; everything else about the package is in pyproject.toml.

``smtp_recv/protocol/_speedups.c`` holds the DATA reader's passes over
message bytes in C; ``smtp_recv/protocol/_data.py`` has the same passes in
Python and uses them when the extension is missing.  ``optional=True``: where
no C compiler works, the build goes on without it.  (setuptools' own
``ext-modules`` table in pyproject.toml is still marked experimental.)
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "smtp_recv.protocol._speedups",
            sources=["smtp_recv/protocol/_speedups.c"],
            optional=True,
        )
    ]
)
