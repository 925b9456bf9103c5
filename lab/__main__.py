"""Command line of the lab: python -m lab {up,down,status,guest,inventory}."""

import argparse
import sys
import time

from . import DEFAULT_HOSTS, Lab, LabError, LibvirtOperationError


def _parser():
    parser = argparse.ArgumentParser(prog="python -m lab", description="kvmops.virt local KVM lab")
    parser.add_argument("--dir", help="lab directory (default: $KVMOPS_LAB_DIR or .lab in the repository)")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the lab hypervisors (harmless when they run)")
    up.add_argument("--hosts", type=int, default=DEFAULT_HOSTS, help="how many hypervisors (default %(default)s)")
    up.add_argument("--network-hosts", type=int, default=0,
                    help="how many private-network hypervisors kvmnet1.. (own network namespace, for NAT "
                         "and isolated networks; default %(default)s)")
    commands.add_parser("down", help="stop every guest and hypervisor the lab started")
    status = commands.add_parser("status", help="hosts, guests and their CPU use")
    status.add_argument("--seconds", type=float, default=1.0, help="CPU sampling window (default %(default)s)")
    commands.add_parser("inventory", help="print the path of the lab's inventory file")

    guest = commands.add_parser("guest", help="create, load or remove a lab guest")
    actions = guest.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="define and start a guest running loadd")
    create.add_argument("name")
    create.add_argument("--host", required=True, help="lab host, e.g. kvm1")
    create.add_argument("--vcpus", type=int, default=1)
    create.add_argument("--memory", type=int, default=256, help="MiB (default %(default)s)")
    create.add_argument("--load", type=int, default=0, help="CPU load in %% of each vCPU (default 0)")
    load = actions.add_parser("load", help="set a running guest's CPU load and/or memory dirtying")
    load.add_argument("name")
    load.add_argument("percent", type=int, nargs="?", help="CPU load in %% of each vCPU, 0..100")
    load.add_argument("--dirty", type=int, help="MiB of memory rewritten per second, 0..4096")
    remove = actions.add_parser("remove", help="destroy and undefine a guest wherever it is")
    remove.add_argument("name")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    lab = Lab(args.dir)
    try:
        if args.command == "up":
            started = time.monotonic()
            lab.up(args.hosts, network_hosts=args.network_hosts)
            print(f"lab up in {time.monotonic() - started:.1f} s")
        elif args.command == "down":
            lab.down()
            left = lab.leftovers()
            if left:
                raise LabError(f"processes still running: {left}")
            print("lab down: no lab process left")
        elif args.command == "status":
            print(lab.render_status(args.seconds))
        elif args.command == "inventory":
            print(lab.layout.inventory_path)
        elif args.action == "create":
            lab.create_guest(args.name, args.host, args.vcpus, args.memory, args.load)
            print(f"{args.name} running on {args.host} at {args.load}% load")
        elif args.action == "load":
            host, (load, dirty) = lab.set_load(args.name, args.percent, args.dirty)
            print(f"{args.name} on {host}: load {load}%, dirtying {dirty} MiB/s")
        elif args.action == "remove":
            print(f"{args.name} removed from {', '.join(lab.remove_guest(args.name))}")
    except (LabError, LibvirtOperationError, ValueError) as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
