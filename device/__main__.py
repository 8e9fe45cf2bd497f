"""`python -m device list|sync|show|connect|pair` (`sketch-search phone ...`): the phone from the terminal."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from device.adb_server import DEFAULT_ADB_PORT, connect_server, list_phones
from device.phone_errors import PhoneError
from device.phone_sync import DEFAULT_FOLDERS, sync_phone
from device.show_on_phone import show_on_phone
from device.wireless import connect_phone, pair_phone
from sketch_search.common.command import run_command, setup_logging
from sketch_search.common.commands_named import Program, named, usage_name
from sketch_search.common.errors import GalleryError


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=usage_name(Program.PHONE), description="The phone over ADB: copy its photos into a gallery "
        "folder, show one of them on it, connect to it over Wi-Fi.")
    _shared(parser, DEFAULT_ADB_PORT, False)
    common = argparse.ArgumentParser(add_help=False)
    _shared(common, argparse.SUPPRESS, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_list_and_sync(commands, common)
    _add_show(commands, common)
    _add_connect_and_pair(commands, common)
    return parser


def _shared(parser: argparse.ArgumentParser, default_port, default_verbose) -> None:
    """The shared options, accepted before or after the command (`sync --adb-port 5038`); after
    it they default to SUPPRESS so they never overwrite a value given before it."""
    parser.add_argument("--adb-port", type=_port, default=default_port,
                        help=f"port of the adb server (default {DEFAULT_ADB_PORT}; started "
                             "when not running)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default_verbose,
                        help="log what each step does")


def _add_list_and_sync(commands, common: argparse.ArgumentParser) -> None:
    listing = commands.add_parser("list", parents=[common],
                                  help="show connected phones, their state and model")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sync = commands.add_parser("sync", parents=[common],
                               help="bring the phone's new and changed photos into the gallery "
                                    "(small images by default)")
    sync.add_argument("--dest", type=Path, required=True,
                      help="gallery folder; each phone gets a subfolder named by its serial")
    sync.add_argument("--serial", help="which phone, when several are connected (see `list`)")
    sync.add_argument("--folders", nargs="+", default=list(DEFAULT_FOLDERS), metavar="FOLDER",
                      help="folders under /sdcard to copy, recursively (default DCIM/Camera), "
                           "e.g. --folders DCIM/Camera Pictures/Screenshots")
    sync.add_argument("--mirror", action="store_true",
                      help="also delete local copies of photos deleted on the phone")
    sync.add_argument("--originals", action="store_true",
                      help="keep byte-for-byte copies of the photos (default: one small image "
                           "per photo, the phone's own thumbnail or the original shrunk)")
    sync.add_argument("--json", action="store_true", help="print the report as JSON")
    sync.add_argument("--timeout", type=float, default=30.0,
                      help="seconds to wait for the phone before giving up (default 30)")


def _add_show(commands, common: argparse.ArgumentParser) -> None:
    show = commands.add_parser("show", parents=[common],
                               help="open a synced photo in the phone's own gallery viewer")
    show.add_argument("path", type=Path, help="the photo, in the gallery folder")
    show.add_argument("--gallery", type=Path, required=True,
                      help="the gallery folder the phone was synced into")
    show.add_argument("--serial", help="only this phone (see `list`)")
    show.add_argument("--timeout", type=float, default=5.0,
                      help="seconds to wait for each answer of the phone (default 5)")


def _add_connect_and_pair(commands, common: argparse.ArgumentParser) -> None:
    connect = commands.add_parser("connect", parents=[common],
                                  help="connect to a phone over Wi-Fi (wireless debugging)")
    connect.add_argument("address", metavar="HOST:PORT",
                         help="the IP address & port the phone shows under Wireless debugging")

    pair = commands.add_parser("pair", parents=[common],
                               help="pair with a phone over Wi-Fi once (needs adb 30 or later)")
    pair.add_argument("address", metavar="HOST:PORT",
                      help="the address & port of the phone's 'Pair device with pairing code'")
    pair.add_argument("code", help="the six-digit pairing code it shows")


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
    try:
        report = sync_phone(args.dest, serial=args.serial, folders=args.folders,
                            mirror=args.mirror, adb_port=args.adb_port, timeout=args.timeout,
                            show_progress=not args.json, originals=args.originals)
    except GalleryError as error:
        raise GalleryError(f"--dest: {error}") from None
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def _run_show(args: argparse.Namespace) -> int:
    if not args.gallery.is_dir():
        raise GalleryError(f"--gallery {args.gallery} is not a folder: give the folder the phone "
                           "was synced into")
    if not args.path.is_file():
        raise GalleryError(f"{args.path} is not a file: give a photo in the gallery")
    result = show_on_phone(args.gallery, args.path, adb_port=args.adb_port, serial=args.serial,
                           timeout=args.timeout)
    if not result.ok:
        raise PhoneError(f"{result.message} ({result.reason})")
    print(result.message)
    return 0


def _run_connect(args: argparse.Namespace) -> int:
    print(connect_phone(args.address, args.adb_port))
    return 0


def _run_pair(args: argparse.Namespace) -> int:
    print(pair_phone(args.address, args.code, args.adb_port))
    print(f"next: {named(Program.PHONE, 'connect')} HOST:PORT, with the address and port shown under Wireless debugging "
          "(not the pairing port)")
    return 0


_COMMANDS = {"list": _run_list, "sync": _run_sync, "show": _run_show, "connect": _run_connect,
             "pair": _run_pair}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return _COMMANDS[args.command](args)


def cli(argv: list[str] | None = None) -> None:
    """`python -m device` and `sketch-search phone`."""
    run_command(lambda: main(argv), interrupted="interrupted: photos already copied are kept; sync again to finish")


if __name__ == "__main__":
    cli()
