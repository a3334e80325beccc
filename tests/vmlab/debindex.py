"""Debian archive indexes: read a dist's Packages.xz, pick packages, download and check .debs.

The machine's apt sources name only its own release, so the lab reads the archive's indexes
itself: each package is downloaded by the index's Filename and checked against its SHA256.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.vmlab.common import MIRROR, LabError, say

INDEX_MAX_AGE = 6 * 3600  # seconds: indexes change daily; an older copy is fetched again


@dataclass(frozen=True)
class Package:
    """One stanza of a Packages index: what is needed to download and check a .deb."""

    name: str
    version: str
    filename: str
    sha256: str
    size: int
    depends: tuple[str, ...]  # first alternative of each dependency, names only


def parse_depends(text: str) -> tuple[str, ...]:
    """Names of the first alternative of each dependency ('a (>= 1) | b, c' -> ('a', 'c'))."""
    names = []
    for clause in text.split(","):
        first = clause.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, maxsplit=1)[0]
        if name:
            names.append(name)
    return tuple(names)


def parse_packages(text: str, prefix: str = "") -> dict[str, list[Package]]:
    """A Packages file's stanzas, by package name (a dist may list several versions).

    With prefix, only packages whose name starts with it: parsing all of sid takes seconds.
    """
    out: dict[str, list[Package]] = {}
    head = "Package: " + prefix
    for stanza in text.split("\n\n"):
        stanza = stanza.strip("\n")
        if not stanza.startswith(head):
            continue
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" not in fields or "Filename" not in fields:
            continue
        pkg = Package(fields["Package"], fields.get("Version", ""), fields["Filename"],
                      fields.get("SHA256", ""), int(fields.get("Size", "0")),
                      parse_depends(fields.get("Depends", "")))
        out.setdefault(pkg.name, []).append(pkg)
    return out


def index_url(archive: str, dist: str, arch: str = "amd64") -> str:
    """Where dists/<dist>/main/binary-<arch>/Packages.xz lives."""
    return f"{MIRROR}/{archive}/dists/{dist}/main/binary-{arch}/Packages.xz"


def index_path(cache: Path, archive: str, dist: str, arch: str = "amd64") -> Path:
    """The cached index: amd64's keeps the name it always had; other arches' carry the arch."""
    tag = "" if arch == "amd64" else f"_{arch}"
    return cache / "indexes" / f"{archive}_{dist}{tag}_Packages.xz"


def download(url: str, dest: Path) -> None:
    """Fetch url into dest via a temp name, so a cut download never looks finished."""
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
    except urllib.error.HTTPError as e:
        tmp.unlink(missing_ok=True)
        if e.code == 404:
            raise LabError(f"{url} is gone from the archive (404): a pinned version was dropped? "
                           f"see `python -m tests.vmlab available`") from e
        raise LabError(f"download of {url} failed: {e}") from e
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise LabError(f"download of {url} failed: {e}") from e
    tmp.rename(dest)


def load_index(cache: Path, archive: str, dist: str, prefix: str = "linux-",
               refresh: bool = False, arch: str = "amd64") -> dict[str, list[Package]]:
    """The dist's index for arch, from the cache when fresh enough (or when the network is down)."""
    path = index_path(cache, archive, dist, arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = not path.exists() or refresh or time.time() - path.stat().st_mtime > INDEX_MAX_AGE
    if stale:
        say(f"reading the index of {archive} {dist} {arch}")
        try:
            download(index_url(archive, dist, arch), path)
        except LabError:
            if not path.exists():
                raise
            say(f"could not refresh the {dist} index; using the cached copy")
    try:
        return parse_packages(lzma.decompress(path.read_bytes()).decode("utf-8", "replace"), prefix)
    except lzma.LZMAError as e:
        path.unlink()
        raise LabError(f"index {path} is corrupt ({e}); run again to fetch it anew") from e


def pick(index: dict[str, list[Package]], name: str, version: str | None = None) -> Package:
    """The stanza for name (at version when given); LabError naming what the index holds."""
    found = index.get(name, [])
    if version is None and found:
        return found[-1]
    for pkg in found:
        if pkg.version == version:
            return pkg
    held = ", ".join(p.version for p in found) or "nothing"
    raise LabError(f"pinned {name} {version} is gone from the archive (the index holds {held}); "
                   f"update tests/vmlab/kernels.toml")


def fetch_deb(cache: Path, archive: str, pkg: Package) -> Path:
    """The .deb in the cache, downloaded and checked against the index's SHA256 once."""
    dest = cache / "debs" / Path(pkg.filename).name
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    say(f"downloading {pkg.name} {pkg.version} ({pkg.size / 1e6:.1f} MB)")
    tmp = dest.with_name(dest.name + ".unchecked")
    download(f"{MIRROR}/{archive}/{pkg.filename}", tmp)
    digest = hashlib.sha256()
    with open(tmp, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != pkg.sha256:
        tmp.unlink()
        raise LabError(f"{pkg.filename}: SHA256 {digest.hexdigest()} differs from the index's {pkg.sha256}")
    tmp.rename(dest)
    return dest
