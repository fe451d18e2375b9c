"""Build the C counting kernel and report-text helper; all other metadata lives in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "zarrgeno.stats._kernel",
            ["zarrgeno/stats/_kernel.c"],
            # -O3 lets gcc vectorise the per-call loop; no -march, so wheels stay portable.
            extra_compile_args=["-O3", "-std=c99"],
        ),
        Extension(
            "zarrgeno.stats.qc._text",
            ["zarrgeno/stats/qc/_text.c"],
            extra_compile_args=["-O3", "-std=c99"],
        ),
    ]
)
