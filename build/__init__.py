"""nvfp4-aot build side: manifests, content keys, compile workers, the store's write side, CLI."""


def cli_main() -> None:
    """The `nvfp4-build` console script: a one-line error, not a traceback, without the build extra."""
    import sys

    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError as e:
        print(
            f"error: nvfp4-build needs the build extra ({e.name} is not installed): pip install 'nvfp4-aot[build]'. "
            f"A serving install checks stores with: python -m nvfp4_aot.runtime verify NAME|DIR",
            file=sys.stderr,
        )
        sys.exit(1)
    from .cli import main

    main()
