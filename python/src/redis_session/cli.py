"""``redis-session``: the package's command line. Subcommands:

- ``migrate``: convert fallback sessions into module sessions in place
  (see `redis_session.fallback.migrate`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: redis-session migrate URL [options]   (redis-session migrate --help)")
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "migrate":
        from .fallback.migrate import main as migrate_main

        return migrate_main(rest)
    print(f"redis-session: unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
