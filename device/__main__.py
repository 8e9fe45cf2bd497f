"""`python -m device list` and `python -m device sync --dest DIR`: the phone from the terminal."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from device.adb_server import DEFAULT_ADB_PORT, connect_server, list_phones
from device.phone_sync import DEFAULT_FOLDERS, sync_phone
from sketch_search.common.command import run_command, setup_logging


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return value


def build_parser() -> argparse.ArgumentParser:
    # The shared options are accepted before or after the command (`sync --adb-port 5038`);
    # after it they default to SUPPRESS so they never overwrite a value given before it.
    def shared(parser: argparse.ArgumentParser, default_port, default_verbose) -> None:
        parser.add_argument("--adb-port", type=_port, default=default_port,
                            help=f"port of the adb server (default {DEFAULT_ADB_PORT}; started "
                                 "when not running)")
        parser.add_argument("-v", "--verbose", action="store_true", default=default_verbose,
                            help="log what each step does")

    parser = argparse.ArgumentParser(
        prog="python -m device", description="Copy a phone's photos over ADB into a gallery folder.")
    shared(parser, DEFAULT_ADB_PORT, False)
    common = argparse.ArgumentParser(add_help=False)
    shared(common, argparse.SUPPRESS, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", parents=[common],
                                  help="show connected phones, their state and model")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sync = commands.add_parser("sync", parents=[common],
                               help="copy new and changed photos from the phone")
    sync.add_argument("--dest", type=Path, required=True,
                      help="gallery folder; each phone gets a subfolder named by its serial")
    sync.add_argument("--serial", help="which phone, when several are connected (see `list`)")
    sync.add_argument("--folders", nargs="+", default=list(DEFAULT_FOLDERS), metavar="FOLDER",
                      help="folders under /sdcard to copy, recursively (default DCIM/Camera), "
                           "e.g. --folders DCIM/Camera Pictures/Screenshots")
    sync.add_argument("--mirror", action="store_true",
                      help="also delete local copies of photos deleted on the phone")
    sync.add_argument("--json", action="store_true", help="print the report as JSON")
    sync.add_argument("--timeout", type=float, default=30.0,
                      help="seconds to wait for the phone before giving up (default 30)")
    return parser


def _run_list(args: argparse.Namespace) -> int:
    phones = list_phones(connect_server(args.adb_port))
    if args.json:
        print(json.dumps([p.to_dict() for p in phones], indent=2))
    elif not phones:
        print("no phone connected: plug it in by USB, turn on USB debugging and unlock it")
    else:
        rows = [("SERIAL", "STATE", "MODEL", "PRODUCT")]
        rows += [(p.serial, p.state, p.model or "-", p.product or "-") for p in phones]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def _run_sync(args: argparse.Namespace) -> int:
    report = sync_phone(args.dest, serial=args.serial, folders=args.folders, mirror=args.mirror,
                        adb_port=args.adb_port, timeout=args.timeout, show_progress=not args.json)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return _run_list(args) if args.command == "list" else _run_sync(args)


def cli(argv: list[str] | None = None) -> None:
    """`python -m device` and `sketch-search phone`."""
    run_command(lambda: main(argv), interrupted="interrupted: photos already copied are kept; sync again to finish")


if __name__ == "__main__":
    cli()
