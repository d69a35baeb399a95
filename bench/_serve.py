"""Serve an emulated tenant for a benchmark in its own process.

The benchmark scripts start this file as a child process so that the emulator's CPU
work (TLS, JSON, the tenant lock) does not share the benchmark process's GIL. It prints
one JSON line with the environment variables that point m365lake at the emulator and
the tenant's size, then serves until its standard input closes, which also happens when
the parent process dies. Each line ``requests`` on its standard input makes it print the
requests handled since the previous such line, as one JSON list, and forget them.

    python bench/_serve.py --state-dir DIR (--corpus PATH … | --large-mailbox N
                                            | --big-file BYTES | --small-files N)
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

from m365lake.emulator import EmulatorOptions, EmulatorServer, Tenant
from m365lake.emulator.drives import ONEDRIVE_LIBRARY
from m365lake.emulator.generator import (
    LARGE_MAILBOX_USER,
    generate_large_mailbox,
    generate_tenant,
)
from m365lake.emulator.loaders import load_corpus
from m365lake.emulator.seed import SeedUser

FILES_USER = SeedUser(
    user_principal_name="files.user@contoso.example",
    display_name="Files User",
    mail="files.user@contoso.example",
)
"""Owner of the OneDrive that ``--big-file`` and ``--small-files`` fill."""
FILE_SEED = 20261204
GENERATOR_CHUNK_BYTES = 16 * 1024 * 1024
SMALL_FILE_BYTES = (1024, 8192)
"""Smallest and largest size of a generated small file."""
FILES_PER_FOLDER = 250
SUBFOLDERS_PER_FOLDER = 20


def pseudo_random_bytes(size: int, seed: int) -> bytes:
    """Return ``size`` bytes from a seeded generator, the same bytes for the same seed."""
    generator = random.Random(seed)
    # randbytes builds one integer of 8n bits, which must stay under 2**31 bits.
    chunks = []
    for start in range(0, size, GENERATOR_CHUNK_BYTES):
        chunks.append(generator.randbytes(min(GENERATOR_CHUNK_BYTES, size - start)))
    return b"".join(chunks)


def add_big_file(tenant: Tenant, size: int) -> int:
    """Store one file of ``size`` pseudo-random bytes in FILES_USER's OneDrive."""
    tenant.add_file(
        "onedrive",
        FILES_USER.user_principal_name,
        ONEDRIVE_LIBRARY,
        ("Video", "big-file.bin"),
        pseudo_random_bytes(size, FILE_SEED),
    )
    return size


def add_small_files(tenant: Tenant, count: int) -> int:
    """Store ``count`` files of 1 to 8 KiB in FILES_USER's OneDrive and return their bytes.

    The files sit FILES_PER_FOLDER to a folder, in folders two levels deep
    (``Folder 00/Sub 07``), as a document library grown over years might.
    """
    generator = random.Random(FILE_SEED)
    total = 0
    for index in range(count):
        folder = index // FILES_PER_FOLDER
        path = (
            f"Folder {folder // SUBFOLDERS_PER_FOLDER:02d}",
            f"Sub {folder % SUBFOLDERS_PER_FOLDER:02d}",
            f"file-{index:06d}.bin",
        )
        content = generator.randbytes(generator.randint(*SMALL_FILE_BYTES))
        tenant.add_file("onedrive", FILES_USER.user_principal_name, ONEDRIVE_LIBRARY, path, content)
        total += len(content)
    return total


def build_file_tenant(big_file: int, small_files: int) -> tuple[Tenant, int, int]:
    """Return a tenant whose only user owns the requested files, the file count and bytes."""
    tenant = Tenant()
    tenant.add_user(FILES_USER)
    files = file_bytes = 0
    if big_file:
        file_bytes += add_big_file(tenant, big_file)
        files += 1
    if small_files:
        file_bytes += add_small_files(tenant, small_files)
        files += small_files
    return tenant, files, file_bytes


def build_tenant(corpora: list[Path], large_mailbox: int) -> tuple[Tenant, int, int]:
    """Return the tenant, its message count and the raw MIME bytes it holds."""
    tenant = Tenant()
    messages = raw_bytes = 0
    if large_mailbox:
        tenant.add_user(LARGE_MAILBOX_USER)
        # Messages are added one at a time so the generator's output is never held twice.
        for message in generate_large_mailbox(large_mailbox):
            tenant.add_message(
                message.user_principal_name,
                message.folder_path,
                message.mime,
                is_read=message.is_read,
                received_at=message.received_at,
            )
            messages += 1
            raw_bytes += len(message.mime)
        return tenant, messages, raw_bytes

    seeds = [load_corpus(path) for path in corpora] if corpora else [generate_tenant()]
    for seed in seeds:
        for user in seed.users:
            # Two corpora may hold the same custodian (lokay-m): one mailbox then gets both.
            if tenant.resolve_user(user.user_principal_name) is None:
                tenant.add_user(user)
        for upn, path in seed.folders:
            tenant.add_folder(upn, path)
        for message in seed.messages:
            tenant.add_message(
                message.user_principal_name,
                message.folder_path,
                message.mime,
                is_read=message.is_read,
                received_at=message.received_at,
                categories=message.categories,
            )
            messages += 1
            raw_bytes += len(message.mime)
    return tenant, messages, raw_bytes


def take_requests(server: EmulatorServer) -> list[dict[str, object]]:
    """Return the requests the emulator handled since the last call, and forget them."""
    records = server.requests
    server.clear_requests()
    return [
        {
            "method": record.method,
            "path": record.path,
            "query": record.query,
            "status": record.status,
            "mailbox": record.mailbox,
            "time": record.time,
        }
        for record in records
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="folder for the emulator's private CA and TLS files",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        action="append",
        default=[],
        help="mail corpus folder to load (repeatable); default: the generator",
    )
    parser.add_argument(
        "--large-mailbox",
        type=int,
        default=0,
        metavar="N",
        help="serve one generated mailbox of N messages instead of a corpus",
    )
    parser.add_argument(
        "--big-file",
        type=int,
        default=0,
        metavar="BYTES",
        help="serve one OneDrive with one file of BYTES pseudo-random bytes, and no mail",
    )
    parser.add_argument(
        "--small-files",
        type=int,
        default=0,
        metavar="N",
        help="serve one OneDrive with N files of 1 to 8 KiB in folders, and no mail",
    )
    parser.add_argument(
        "--requests-per-window",
        type=int,
        default=10_000,
        help="per-mailbox request budget per 10-minute window (Exchange Online: 10,000)",
    )
    parser.add_argument(
        "--sharepoint-ru-per-minute",
        type=int,
        default=EmulatorOptions.sharepoint_ru_per_minute,
        help="per-app SharePoint resource units per minute "
        "(real tenants: 1,250 to 6,250; default: never throttles)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="shrink the throttles' windows and budgets by this factor (default: 1)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    files = file_bytes = messages = raw_bytes = 0
    if args.big_file or args.small_files:
        tenant, files, file_bytes = build_file_tenant(args.big_file, args.small_files)
    else:
        tenant, messages, raw_bytes = build_tenant(args.corpus, args.large_mailbox)
    options = EmulatorOptions(
        mailbox_requests_per_window=args.requests_per_window,
        sharepoint_ru_per_minute=args.sharepoint_ru_per_minute,
        throttle_time_scale=args.time_scale,
    )
    with EmulatorServer(tenant, args.state_dir, options=options) as server:
        report = {
            "environment": server.environment(),
            "messages": messages,
            "raw_bytes": raw_bytes,
            "mailboxes": len(tenant.user_ids()),
            "files": files,
            "file_bytes": file_bytes,
        }
        print(json.dumps(report), flush=True)
        # Blocks until the parent closes the pipe or exits.
        for line in sys.stdin:
            if line.strip() == "requests":
                print(json.dumps(take_requests(server)), flush=True)


if __name__ == "__main__":
    main()
