"""Serve an emulated tenant for a benchmark in its own process.

The benchmark scripts start this file as a child process so that the emulator's CPU
work (TLS, JSON, the tenant lock) does not share the benchmark process's GIL. It prints
one JSON line with the environment variables that point m365lake at the emulator and
the tenant's size, then serves until its standard input closes, which also happens when
the parent process dies.

    python bench/_serve.py --state-dir DIR (--corpus PATH … | --large-mailbox N)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from m365lake.emulator import EmulatorOptions, EmulatorServer, Tenant
from m365lake.emulator.generator import (
    LARGE_MAILBOX_USER,
    generate_large_mailbox,
    generate_tenant,
)
from m365lake.emulator.loaders import load_corpus


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
        "--requests-per-window",
        type=int,
        default=10_000,
        help="per-mailbox request budget per 10-minute window (Exchange Online: 10,000)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    tenant, messages, raw_bytes = build_tenant(args.corpus, args.large_mailbox)
    options = EmulatorOptions(mailbox_requests_per_window=args.requests_per_window)
    with EmulatorServer(tenant, args.state_dir, options=options) as server:
        report = {
            "environment": server.environment(),
            "messages": messages,
            "raw_bytes": raw_bytes,
            "mailboxes": len(tenant.user_ids()),
        }
        print(json.dumps(report), flush=True)
        # Blocks until the parent closes the pipe or exits.
        sys.stdin.read()


if __name__ == "__main__":
    main()
