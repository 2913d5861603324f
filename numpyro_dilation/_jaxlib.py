"""The installed jaxlib's release: some of its older versions need workarounds."""

from __future__ import annotations

import re
from importlib.metadata import version


def release(text: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: ``"0.10.2rc1"`` -> ``(0, 10, 2)``."""
    match = re.match(r"\d+(\.\d+)*", text)
    if match is None:
        raise ValueError(f"cannot read a release from version {text!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def installed_release() -> tuple[int, ...]:
    """Release of the installed jaxlib."""
    return release(version("jaxlib"))


__all__ = ["installed_release", "release"]
