"""`archbench setup`: provision this host idempotently, or import an image archive."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from bench import inputs
from bench.cli.common import _LIST, EXIT_OK, Subcommands, _path, _platforms, _say, out
from bench.platforms import parse_platform
from bench.tools.registry import registry_address


def add_parser(sub: Subcommands) -> None:
    """Add the `setup` subcommand and its flags to `sub`."""
    s = sub.add_parser("setup", help="provision this host idempotently")
    s.add_argument(
        "--registry",
        type=inputs.text_flag(inputs.registry),
        help="HOST:PORT on loopback (default $ARCHBENCH_REGISTRY or 127.0.0.1:5000)",
    )
    s.add_argument(
        "--platform",
        action="append",
        default=[],
        type=_LIST,
        help="platforms to provision base images for (default linux/amd64,linux/arm64)",
    )
    s.add_argument(
        "--builder-image",
        type=inputs.text_flag(inputs.image_ref),
        help="a reachable moby/buildkit image: creates the "
        "docker-container builder `archbench-container`",
    )
    s.add_argument(
        "--import",
        dest="import_archive",
        type=_path,
        metavar="ARCHIVE",
        help="only copy the images of a `docker save` or OCI archive into the local "
        "registry (Docker Hub's mirror), every platform it holds",
    )
    s.add_argument(
        "--import-name",
        type=inputs.text_flag(inputs.image_ref),
        metavar="NAME:TAG",
        help="name of the imported image when its archive names none",
    )


def run(args: argparse.Namespace) -> int:
    """Run `archbench setup` with the parsed `args`; return its exit code."""
    from bench.host import setup as provision

    address = registry_address(args.registry)
    if args.import_archive is not None:
        from bench.host import imports

        done = imports.import_archive(
            args.import_archive, address, args.import_name or "", lambda m: _say(f"setup: {m}")
        )
        for image in done:
            _say(f"setup: {image.name}: {image.reference} ({', '.join(image.platforms)})")
        return EXIT_OK
    platforms = _platforms(args.platform) or (
        parse_platform("linux/amd64"),
        parse_platform("linux/arm64"),
    )
    options = provision.SetupOptions(address, platforms, args.builder_image)
    outcomes = provision.setup(options, lambda m: _say(f"setup: {m}"))
    table = Table("step", "state", "detail", title="archbench setup")
    for o in outcomes:
        table.add_row(escape(o.name), "changed" if o.changed else "ok", escape(o.detail))
    out.print(table)
    changed = [o.name for o in outcomes if o.changed]
    _say("setup: changed " + ", ".join(changed) if changed else "setup: nothing to change")
    return EXIT_OK
