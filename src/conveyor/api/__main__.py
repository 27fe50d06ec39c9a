"""`python -m conveyor.api [FILE]`: write the OpenAPI document (to stdout without FILE);
clients/typescript's `npm run gen:api` generates its types from it."""

from __future__ import annotations

import json
import sys

from conveyor.api.app import OPERATIONS, api_version
from conveyor.api.openapi import document


def main(argv: list[str]) -> None:
    """Write the document to argv[0], or to stdout."""
    text = json.dumps(document(OPERATIONS, api_version()), indent=2, ensure_ascii=False) + "\n"
    if argv:
        with open(argv[0], "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
