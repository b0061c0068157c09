"""``python -m activities.audit_cli verify [PARTITION ...]``: walk the audit trail in the
configured books (SQLite or Cosmos DB, from the same settings the app reads) and report
the first broken link of each partition. Exits 1 when a chain is broken.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

from activities.archive import verify_archive
from adapters.bootstrap import Settings, build_archive, build_store
from domain.audit import find_break
from domain.ports import Books

INGEST = "ingest"


def verify_partition(books: Books, partition: str, *, head: str | None = None) -> str | None:
    """Why the partition's chain is broken (first break, with its position), or None."""
    records = books.records(partition)
    found = find_break(records, head=head)
    if found is None:
        return None
    where = records[found.index].seq if found.index < len(records) else "the end"
    return f"record {where}: {found.reason}"


def _verify_archive(settings: Settings, books: Books, partition: str, day: str) -> int:
    archive = build_archive(settings)
    if archive is None:
        print("no archive configured (AUDIT_ARCHIVE or AUDIT_ARCHIVE__serviceUri)")
        return 1
    problem = verify_archive(books, archive, partition, date.fromisoformat(day))
    print(
        f"{partition} archive {day}: " + ("verified" if problem is None else f"BROKEN: {problem}")
    )
    return 0 if problem is None else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m activities.audit_cli")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="verify audit chains in the books")
    check.add_argument("partitions", nargs="*", help="default: the account's and ingest")
    check.add_argument("--head", default=None, help="the last hash recorded elsewhere")
    check.add_argument(
        "--archive", default=None, metavar="DAY", help="also verify that day's archive (ISO date)"
    )
    args = parser.parse_args(argv)
    if args.head is not None and len(args.partitions) != 1:
        parser.error("--head belongs to one chain: name exactly one partition")
    settings = Settings.from_environ(os.environ)
    books = build_store(settings)
    broken = 0
    try:
        for partition in args.partitions or [settings.account, INGEST]:
            count = len(books.records(partition))
            problem = verify_partition(books, partition, head=args.head)
            if problem is None:
                print(f"{partition}: {count} records, chain verified")
            else:
                broken += 1
                print(f"{partition}: BROKEN at {problem}")
            if args.archive:
                broken += _verify_archive(settings, books, partition, args.archive)
    finally:
        books.close()
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
