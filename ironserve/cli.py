"""The ironserve command line.

Exit codes: 0 success; 1 a host failed a task (status: a critical alert fires); 2 bad input (an argument,
inventory or declaration that cannot work); 3 an environment failure (a tool missing, a machine that does not
boot, a download that fails, a doctor check that fails, Prometheus not answering); 4 a host was unreachable (and
none failed); 5 run --expect-no-change: every stage passed and a task changed something (drift).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from ironserve import __version__, paths
from ironserve.run import (  # noqa: F401
    EXIT_BAD_INPUT,
    EXIT_CHANGED,
    EXIT_ENVIRONMENT,
    EXIT_HOST_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
)

DEFAULT_LAB_FILE = paths.REPO_ROOT / "inventories" / "lab" / "lab.yml"
DEFAULT_INVENTORY = paths.REPO_ROOT / "inventories" / "lab"
DEFAULT_SITE = paths.REPO_ROOT / "site.yml"


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

    found = lab.leftovers(args.name)
    for item in found:
        print(f"left behind: {item}")
    if not found:
        where = f"of lab {args.name} " if args.name else ""
        print(f"no lab process, interface or folder {where}is left on this machine")
    return EXIT_ENVIRONMENT if found else EXIT_OK


def cmd_lab_prune(args: argparse.Namespace) -> int:
    from ironserve.lab import layers

    if args.max_gb <= 0:
        print("ironserve: --max-gb must be more than 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    removed = layers.prune_images() + layers.prune(layers.current_keys(), int(args.max_gb * 2**30))
    print(
        f"pruned {len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'} (layers kept under {args.max_gb} GiB)"
    )
    return EXIT_OK


def cmd_image_build(args: argparse.Namespace) -> int:
    from ironserve import golden_image, stages

    requested = stages.parse_names(args.stages)
    golden_image.choose_stages(requested, Path(args.site))  # bad input fails here, before anything is built
    record = golden_image.build(requested, Path(args.output), site=Path(args.site))
    print(
        f"golden image in {args.output}: stages {', '.join(record['stages'])}; left for first boot: "
        f"{', '.join(record['left_for_first_boot'])}; record in {Path(args.output) / 'image.json'}"
    )
    return EXIT_OK


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


def cmd_lab_forward(args: argparse.Namespace) -> int:
    from ironserve.lab import lab

    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        print(f"ironserve: target {args.target!r} is not HOST:PORT, like 10.99.0.100:443", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        pid = lab.forward(args.name, args.machine, args.local_port, args.target)
    except lab.LabError as exc:
        print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"127.0.0.1:{args.local_port} -> {args.target} through {args.machine} (pid {pid}, until the lab goes down)")
    return EXIT_OK


def cmd_bundle_build(args: argparse.Namespace) -> int:
    from ironserve.bundle.build import build_for_roles

    bundle = build_for_roles(extra=args.extra, folder=Path(args.out) if args.out else None, force=args.force)
    print(f"bundle: {bundle.folder} ({len(bundle.packages())} packages; key {bundle.public_key})")
    return EXIT_OK


def cmd_bundle_images(args: argparse.Namespace) -> int:
    from ironserve.bundle.images import add, default_images

    images = args.image or default_images()
    index = add(images, Path(args.out) if args.out else paths.bundle_dir())
    for image in images:
        entry = index[image]
        print(f"{image}: images/{entry['file']} ({entry['digest']}, sha256 {entry['sha256']})")
    return EXIT_OK


def cmd_bundle_serve(args: argparse.Namespace) -> int:
    from ironserve.bundle.serve import serve

    serve(Path(args.dir), args.bind, args.port, Path(args.access_log) if args.access_log else None)
    return EXIT_OK


def _reporter(args: argparse.Namespace, stage_names: list[str]):
    from ironserve import progress

    if args.json:
        return progress.JsonReporter()
    if args.plain or not sys.stdout.isatty():
        return progress.PlainReporter()
    return progress.RichReporter(stage_names)


def cmd_run(args: argparse.Namespace) -> int:
    from ironserve import run

    try:
        planned = run.plan(
            Path(args.site),
            Path(args.inventory) if args.inventory else None,
            args.stages,
            args.start,
            args.limit,
            args.check,
            args.diff,
            args.resume,
            args.expect_no_change,
        )
    except run.RunInputError as exc:
        print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if planned.nothing_to_do:
        print(planned.nothing_to_do)
        return EXIT_OK
    names = [stage.name for stage, _ in planned.stages]
    return run.execute(planned.stages, planned.record, planned.inventory, _reporter(args, names))


def cmd_restore(args: argparse.Namespace) -> int:
    from ironserve import restore, run, stages

    try:
        planned = restore.plan(
            Path(args.site),
            Path(args.inventory),
            args.host,
            args.snapshot,
            args.target,
            args.force,
            args.accept_old,
            args.stages,
        )
    except (run.RunInputError, stages.StageError) as exc:
        print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    names = [stage.name for stage, _ in planned.stages]
    return run.execute(planned.stages, planned.record, planned.inventory, _reporter(args, names))


def cmd_report(args: argparse.Namespace) -> int:
    from ironserve import run

    record = run.find_run(args.run)
    if record is None:
        error = f"no run {args.run or ''} under {run.artifacts_dir() / 'runs'}".replace("  ", " ")
        if args.json:
            print(json.dumps({"error": error}))
        else:
            print(f"ironserve: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print((record.folder / run.RUN_RECORD).read_text(), end="")
    else:
        print(run.markdown(record), end="")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from ironserve import doctor

    if not Path(args.inventory).exists():
        print(f"ironserve: inventory {args.inventory} does not exist", file=sys.stderr)
        return EXIT_BAD_INPUT
    results = doctor.check(Path(args.inventory), reachability=not args.skip_reachability)
    for result in results:
        print(f"{'ok ' if result.ok else 'BAD'}  {result.name}: {result.detail}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_ENVIRONMENT


def cmd_plan(args: argparse.Namespace) -> int:
    from ironserve_target import gpu_ids

    from ironserve import driver_policy, engines, planner

    matches = gpu_ids.find_models(args.gpu)
    if len(matches) != 1:
        if matches:
            hint = "it could be any of " + ", ".join(sorted({gpu_ids.describe_gpu(*m)["model"] for m in matches}))
        else:
            hint = "the models the planner sizes are " + ", ".join(sorted({m for m, _, _, _ in gpu_ids.sized_models()}))
        print(f"ironserve: --gpu '{args.gpu}' must name one GPU model; {hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        chosen = planner.plan(planner.Cluster.of(*matches[0], args.count, args.nodes), args.model)
    except planner.PlanError as exc:
        print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(chosen.to_dict(), indent=2))
        return EXIT_OK
    print(
        f"{chosen.checkpoint} ({chosen.repo}) on {chosen.engine}, {chosen.precision}, TP{chosen.tensor_parallel}"
        f"{f' over {chosen.nodes} nodes' if chosen.nodes > 1 else ''}, context {chosen.max_model_len}, "
        f"KV cache {chosen.kv_cache_dtype}"
    )
    print("engine arguments: " + " ".join(chosen.engine_args))
    image = engines.engine(chosen.engine)
    needs = driver_policy.CUDA_TOOLKITS[image.cuda][0]
    print(f"engine image: {image.image} (CUDA {image.cuda}: NVIDIA driver {needs} or newer)")
    for reason in chosen.reasons:
        print(f"- {reason}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from ironserve import status

    try:
        found = status.collect(args.prometheus or status.prometheus_of(args.inventory))
    except status.StatusError as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, status.InventoryError) else EXIT_ENVIRONMENT
    print(json.dumps(found, indent=2) if args.json else status.table(found), end="\n" if args.json else "")
    return EXIT_HOST_FAILED if found["critical"] else EXIT_OK


def cmd_scaler(args: argparse.Namespace) -> int:
    from ironserve import scaler

    inventory = Path(args.inventory)
    if not inventory.exists():
        print(f"ironserve: inventory {inventory} does not exist", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.cooldown < 0:
        print("ironserve: --cooldown is seconds, 0 or more", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        token = scaler.read_token(Path(args.token_file))
    except scaler.TokenError as exc:
        print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    log = Path(args.log) if args.log else None
    return scaler.serve(inventory, args.address, args.port, args.cooldown, log, token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ironserve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ironserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the stages of site.yml in order, each an ansible-runner job")
    run.add_argument("--inventory", "-i", help="the inventory to provision (required; --resume: the run's own)")
    run.add_argument("--site", default=str(DEFAULT_SITE), help="the playbook listing the stages (default: site.yml)")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--stages", help="comma-separated stages to run, in site order")
    which.add_argument("--from", dest="start", help="run from this stage to the end")
    which.add_argument(
        "--resume",
        action="store_true",
        help="continue the last run from its first incomplete stage, for the hosts that did not finish it",
    )
    run.add_argument("--limit", "-l", help="Ansible host pattern")
    run.add_argument("--check", action="store_true", help="Ansible check mode")
    run.add_argument("--diff", action="store_true", help="show file differences")
    run.add_argument(
        "--expect-no-change",
        action="store_true",
        help="a drift check for a converged site: exit 5, naming each host and task, if any task changed something",
    )
    output = run.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON event per line, for pipelines")
    output.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    run.set_defaults(func=cmd_run)

    restore = commands.add_parser(
        "restore", help="rebuild a host from its backups: secrets and site state, the stages, metrics history"
    )
    restore.add_argument("--inventory", "-i", required=True, help="the site's inventory, as for ironserve run")
    restore.add_argument("--host", required=True, help="the inventory host to restore (rebuilt from bare disks)")
    restore.add_argument("--snapshot", default="latest", help="a snapshot id as restic shows it (default: latest)")
    restore.add_argument(
        "--target", default="cold", help="the backup target to restore from: cold (default) or offsite"
    )
    restore.add_argument(
        "--force", action="store_true", help="restore onto a host that still serves (its engine or front door runs)"
    )
    restore.add_argument(
        "--accept-old", action="store_true", help="accept a snapshot older than backup_restore_max_age_hours"
    )
    restore.add_argument(
        "--site", default=str(DEFAULT_SITE), help="the playbook listing the stages (default: site.yml)"
    )
    restore.add_argument("--stages", help="comma-separated stages to run between the two halves (default: all)")
    restore_output = restore.add_mutually_exclusive_group()
    restore_output.add_argument("--json", action="store_true", help="one JSON event per line, for pipelines")
    restore_output.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    restore.set_defaults(func=cmd_restore)

    report = commands.add_parser("report", help="show a run's record (default: the latest run)")
    report.add_argument("run", nargs="?", help="run id (a folder under artifacts/runs)")
    report.add_argument("--json", action="store_true", help="the run's record as JSON (errors too), for pipelines")
    report.set_defaults(func=cmd_report)

    plan = commands.add_parser("plan", help="choose the DeepSeek checkpoint, engine and sizes for given GPUs")
    plan.add_argument("--gpu", required=True, help="GPU model, or a unique part of it (e.g. 'H200 SXM', 'L40S')")
    plan.add_argument("--count", type=int, required=True, help="GPUs per node")
    plan.add_argument("--nodes", type=int, default=1, help="nodes one engine spans (default: 1)")
    plan.add_argument("--model", default="auto", help="a checkpoint name (ironserve/planner.py CHECKPOINTS) or auto")
    plan.add_argument("--json", action="store_true", help="the plan as JSON")
    plan.set_defaults(func=cmd_plan)

    status = commands.add_parser(
        "status", help="every host's health, the alerts firing and the floating address's holder, from Prometheus"
    )
    source = status.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", help="a monitoring server's Prometheus, like http://192.0.2.11:9090")
    source.add_argument("--inventory", "-i", help="the inventory whose first monitoring server to ask")
    status.add_argument("--json", action="store_true", help="print JSON for pipelines")
    status.set_defaults(func=cmd_status)

    scale = commands.add_parser(
        "scaler", help="receive Alertmanager's scale alerts and run playbooks/scale.yml for each (docs/monitoring.md)"
    )
    scale.add_argument("--inventory", "-i", required=True, help="the site's inventory, as for ironserve run")
    scale.add_argument("--address", default="127.0.0.1", help="address to listen on (monitoring_scaler_url's host)")
    scale.add_argument("--port", type=int, default=9096, help="port to listen on (default: 9096)")
    scale.add_argument(
        "--cooldown", type=float, default=300, help="seconds after a host's action before its next (default: 300)"
    )
    scale.add_argument("--log", help="also append each action, one JSON line, to this file")
    scale.add_argument(
        "--token-file",
        required=True,
        help="a 0600 file with the bearer token Alertmanager sends (monitoring_scaler_token)",
    )
    scale.set_defaults(func=cmd_scaler)

    doctor = commands.add_parser("doctor", help="check the controller and the inventory, changing nothing")
    doctor.add_argument(
        "--inventory", "-i", default=str(DEFAULT_INVENTORY), help=f"inventory to check (default: {DEFAULT_INVENTORY})"
    )
    doctor.add_argument("--skip-reachability", action="store_true", help="do not contact any host")
    doctor.set_defaults(func=cmd_doctor)

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
    down.add_argument("name", nargs="?", default="demo", help="the lab (default: demo)")
    down.add_argument("--all", action="store_true", help="every lab that is up")
    down.set_defaults(func=cmd_lab_down)
    status = lab.add_parser("status", help="show labs and their machines")
    status.add_argument("name", nargs="?", help="only this lab (default: every lab)")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.set_defaults(func=cmd_lab_status)
    leftovers = lab.add_parser("leftovers", help="list what labs (or one lab) left behind (exit 3 if anything)")
    leftovers.add_argument("name", nargs="?", help="only this lab (default: every lab)")
    leftovers.set_defaults(func=cmd_lab_leftovers)
    prune = lab.add_parser("prune", help="remove stale base images and machine layers, and keep layers under a cap")
    prune.add_argument(
        "--max-gb",
        type=float,
        default=float(os.environ.get("IRONSERVE_LAYER_CACHE_GB", "20")),
        help="most GiB of layers to keep, least recently used go first (default: $IRONSERVE_LAYER_CACHE_GB or 20)",
    )
    prune.set_defaults(func=cmd_lab_prune)
    ssh = lab.add_parser("ssh", help="open a root shell (or run a command) on a lab machine")
    ssh.add_argument("name", help="the lab")
    ssh.add_argument("machine", help="a machine of that lab")
    ssh.add_argument("command", nargs="*", help="a command to run there (default: a shell)")
    ssh.set_defaults(func=cmd_lab_ssh)
    forward = lab.add_parser(
        "forward", help="reach a service on a lab segment from this machine: a local port through a machine's SSH"
    )
    forward.add_argument("name", help="the lab")
    forward.add_argument("machine", help="the machine the connections go through")
    forward.add_argument("local_port", type=int, help="the port on 127.0.0.1 here")
    forward.add_argument("target", help="HOST:PORT as that machine reaches it, like the floating address's 443")
    forward.set_defaults(func=cmd_lab_forward)

    image = commands.add_parser("image", help="golden images for sites that deploy disk images (PXE, MAAS, Ironic)")
    image_commands = image.add_subparsers(dest="image_command", required=True)
    image_build = image_commands.add_parser(
        "build", help="a disk image after host-agnostic stages in image-build mode, with a record of what it skipped"
    )
    image_build.add_argument("--stages", required=True, help="comma-separated, from: base, gpu (e.g. base,gpu)")
    image_build.add_argument("--output", required=True, help="folder for rootfs.qcow2, vmlinuz, initrd.img, image.json")
    image_build.add_argument("--site", default=str(DEFAULT_SITE), help="the site.yml whose stages these are")
    image_build.set_defaults(func=cmd_image_build)

    bundle = commands.add_parser("bundle", help="the offline package bundle for air-gapped sites")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    build = bundle_commands.add_parser("build", help="download every package the roles declare, with dependencies")
    build.add_argument("--out", help=f"bundle folder (default: {paths.bundle_dir()})")
    build.add_argument("--extra", nargs="*", default=[], help="more Debian packages to carry")
    build.add_argument("--force", action="store_true", help="rebuild even if the bundle matches the request")
    build.set_defaults(func=cmd_bundle_build)
    images = bundle_commands.add_parser(
        "images", help="copy the engine and exporter images into the bundle with skopeo (on a connected machine)"
    )
    images.add_argument("--out", help=f"bundle folder (default: {paths.bundle_dir()})")
    images.add_argument(
        "--image",
        action="append",
        help="an image by tag (repeatable; default: every engine's pinned image and the DCGM exporter)",
    )
    images.set_defaults(func=cmd_bundle_images)
    serve = bundle_commands.add_parser("serve", help="serve a bundle folder over HTTP")
    serve.add_argument(
        "--dir", default=str(paths.bundle_dir()), help=f"the bundle folder (default: {paths.bundle_dir()})"
    )
    serve.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--access-log", help="a file to log each request to (default: none)")
    serve.set_defaults(func=cmd_bundle_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ironserve.bundle.build import BundleError
    from ironserve.bundle.images import ImageBundleError
    from ironserve.golden_image import ExportError, GoldenImageError
    from ironserve.lab.image import ImageError
    from ironserve.lab.lab import LabError
    from ironserve.lab.layers import LayerError
    from ironserve.lab.segment import SegmentError
    from ironserve.lab.spec import SpecError
    from ironserve.lab.vm import VmError
    from ironserve.stages import StageError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"ironserve: bad lab declaration: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (StageError, GoldenImageError) as exc:
        print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (BundleError, ExportError, ImageBundleError, ImageError, LabError, LayerError, SegmentError, VmError) as exc:
        print(f"ironserve: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT


if __name__ == "__main__":
    sys.exit(main())
