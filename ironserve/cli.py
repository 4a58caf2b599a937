"""The ironserve command line.

Exit codes: 0 success, 2 bad input (a declaration or argument that cannot work), 3 an environment
failure (a tool missing, a machine that does not boot, a download that fails).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from ironserve import __version__, paths

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
DEFAULT_LAB_FILE = paths.REPO_ROOT / "inventories" / "lab" / "lab.yml"


def _load_lab(args: argparse.Namespace):
    from ironserve.lab.spec import lab_from_dict, lab_from_platforms

    if args.platforms:
        platforms = json.loads(Path(args.platforms).read_text())
        return lab_from_platforms(args.name, platforms)
    data = yaml.safe_load(Path(args.file).read_text()) or {}
    return lab_from_dict(data, name=args.name)


def _bundle(args: argparse.Namespace, log):
    if getattr(args, "no_bundle", False):
        return None
    from ironserve.bundle.build import build_for_roles

    return build_for_roles(log=log)


def cmd_lab_up(args: argparse.Namespace) -> int:
    from ironserve.lab import lab

    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    spec = _load_lab(args)
    state = lab.up(spec, _bundle(args, log), timeout=args.timeout, log=log)
    if args.json:
        print(json.dumps(state))
    return EXIT_OK


def cmd_lab_down(args: argparse.Namespace) -> int:
    from ironserve.lab import lab

    names = lab.all_labs() if args.all else [args.name]
    for name in names:
        if not lab.down(name) and not args.all:
            print(f"lab {name}: not up (nothing to remove)")
    return EXIT_OK


def cmd_lab_status(args: argparse.Namespace) -> int:
    from ironserve.lab import lab

    names = [args.name] if args.name else lab.all_labs()
    report = [s for s in (lab.status(n) for n in names) if s is not None]
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    if not report:
        print("no lab is up")
    for entry in report:
        print(f"lab {entry['name']} (bridge {entry['bridge']}, inventory {entry['inventory']})")
        for m in entry["machines"]:
            state = "running" if m["running"] else "STOPPED"
            print(f"  {m['name']:<12} {state:<8} ssh 127.0.0.1:{m['ssh_port']}  booted in {m['boot_seconds']} s")
    return EXIT_OK


def cmd_lab_leftovers(args: argparse.Namespace) -> int:
    from ironserve.lab import lab

    found = lab.leftovers()
    for item in found:
        print(f"left behind: {item}")
    if not found:
        print("no lab process, interface or folder is left on this machine")
    return EXIT_ENVIRONMENT if found else EXIT_OK


def cmd_lab_ssh(args: argparse.Namespace) -> int:
    from ironserve.lab import lab, vm

    state = lab.load_state(args.name)
    if state is None:
        print(f"lab {args.name} is not up; run 'ironserve lab up' first", file=sys.stderr)
        return EXIT_BAD_INPUT
    ports = {m["name"]: m["ssh_port"] for m in state["machines"]}
    if args.machine not in ports:
        print(f"lab {args.name} has no machine {args.machine!r}; it has: {', '.join(ports)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    argv = vm.ssh_argv(ports[args.machine], paths.ssh_key_path(), *args.command)
    os.execvp(argv[0], argv)  # noqa: S606 - an interactive ssh replaces this process on purpose
    return EXIT_ENVIRONMENT  # not reached


def cmd_bundle_build(args: argparse.Namespace) -> int:
    from ironserve.bundle.build import build_for_roles

    bundle = build_for_roles(extra=args.extra, folder=Path(args.out) if args.out else None, force=args.force)
    print(f"bundle: {bundle.folder} ({len(bundle.packages())} packages; key {bundle.public_key})")
    return EXIT_OK


def cmd_bundle_serve(args: argparse.Namespace) -> int:
    from ironserve.bundle.serve import serve

    serve(Path(args.dir), args.bind, args.port, Path(args.access_log) if args.access_log else None)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ironserve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ironserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    lab = commands.add_parser("lab", help="the QEMU test bench").add_subparsers(dest="lab_command", required=True)
    up = lab.add_parser("up", help="boot a lab (builds the base image and package bundle on first use)")
    up.add_argument("--file", default=str(DEFAULT_LAB_FILE), help="lab declaration (default: %(default)s)")
    up.add_argument("--platforms", help="Molecule platforms as a JSON file, instead of --file")
    up.add_argument("--name", help="lab name (default: the declaration's)")
    up.add_argument("--no-bundle", action="store_true", help="boot without a package bundle server")
    up.add_argument("--timeout", type=float, default=420.0, help="seconds to wait for SSH per machine")
    up.add_argument("--json", action="store_true", help="print the lab state as JSON on stdout")
    up.set_defaults(func=cmd_lab_up)
    down = lab.add_parser("down", help="stop a lab and remove everything it created")
    down.add_argument("name", nargs="?", default="demo")
    down.add_argument("--all", action="store_true", help="every lab that is up")
    down.set_defaults(func=cmd_lab_down)
    status = lab.add_parser("status", help="show labs and their machines")
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_lab_status)
    leftovers = lab.add_parser("leftovers", help="list what labs left behind (exit 3 if anything)")
    leftovers.set_defaults(func=cmd_lab_leftovers)
    ssh = lab.add_parser("ssh", help="open a root shell (or run a command) on a lab machine")
    ssh.add_argument("name")
    ssh.add_argument("machine")
    ssh.add_argument("command", nargs="*")
    ssh.set_defaults(func=cmd_lab_ssh)

    bundle = commands.add_parser("bundle", help="the offline package bundle for air-gapped sites")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    build = bundle_commands.add_parser("build", help="download every package the roles declare, with dependencies")
    build.add_argument("--out", help=f"bundle folder (default: {paths.bundle_dir()})")
    build.add_argument("--extra", nargs="*", default=[], help="more Debian packages to carry")
    build.add_argument("--force", action="store_true", help="rebuild even if the bundle matches the request")
    build.set_defaults(func=cmd_bundle_build)
    serve = bundle_commands.add_parser("serve", help="serve a bundle folder over HTTP")
    serve.add_argument("--dir", default=str(paths.bundle_dir()))
    serve.add_argument("--bind", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--access-log")
    serve.set_defaults(func=cmd_bundle_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ironserve.bundle.build import BundleError
    from ironserve.lab.image import ImageError
    from ironserve.lab.lab import LabError
    from ironserve.lab.segment import SegmentError
    from ironserve.lab.spec import SpecError
    from ironserve.lab.vm import VmError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"ironserve: bad lab declaration: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (BundleError, ImageError, LabError, SegmentError, VmError) as exc:
        print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT


if __name__ == "__main__":
    sys.exit(main())
