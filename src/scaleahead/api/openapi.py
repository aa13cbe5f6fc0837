"""The committed OpenAPI contract (``openapi.json`` beside this file).

``python -m scaleahead.api.openapi`` rewrites it from the app; ``tests/test_api_contract.py``
fails when the served document and the committed one differ, so every interface change shows
up as a diff of the contract in review.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from scaleahead.config import Settings

CONTRACT = Path(__file__).with_name("openapi.json")


def document(settings: Settings | None = None) -> dict[str, Any]:
    from scaleahead.api.app import create_app

    # Defaults only: the contract must not depend on the local environment.
    return create_app(settings or Settings(_env_file=None)).openapi()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main() -> int:
    CONTRACT.write_text(render(document()))
    print(f"wrote {CONTRACT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
