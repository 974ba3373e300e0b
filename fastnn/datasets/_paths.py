"""Where data sets live on this machine: the user cache directory, and the fastnn source checkout
(if any) that is being run.

A checkout is a directory whose pyproject.toml names the project fastnn. It is looked for from
the current directory up to the root, because the README installs fastnn (non-editable) into the
clone's .venv and runs it from the clone: the installed package then lives in site-packages and
only the working directory leads back to the clone. The checkout the imported package itself lives
in (an in-place build or an editable install, whatever the working directory) comes after it.
Nothing is recorded at build time: a wheel is built in one place and installed in another, and a
path baked into it would point at the builder's disk.
"""
import os
import re
import sys

_PROJECT = "fastnn"


def cache_dir():
    """fastnn's user cache directory (not created): $XDG_CACHE_HOME/fastnn or ~/.cache/fastnn on
    Linux and other Unix systems, ~/Library/Caches/fastnn on macOS, %LOCALAPPDATA%\\fastnn\\Cache
    on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
        return os.path.join(base, "fastnn", "Cache")
    if sys.platform == "darwin":
        return os.path.join(os.path.expanduser("~"), "Library", "Caches", "fastnn")
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastnn")


def project_name(pyproject):
    """The [project] name in a pyproject.toml file, normalised (PEP 503), or None. A line scan
    rather than a TOML parser: Python 3.9 has no tomllib and a name is one `name = "..."` line."""
    try:
        with open(pyproject, encoding="utf-8") as f:
            text = f.read(1 << 20)
    except (OSError, UnicodeDecodeError):
        return None
    section = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[] \t")
            continue
        m = re.match(r"""name\s*=\s*["']([^"']+)["']\s*$""", line)
        if section == "project" and m:
            return re.sub(r"[-_.]+", "-", m.group(1)).lower()
    return None


def is_checkout(directory):
    """True when `directory` holds a pyproject.toml whose project is fastnn."""
    return project_name(os.path.join(directory, "pyproject.toml")) == _PROJECT


def package_checkout():
    """The checkout the imported fastnn package lives in, or None (an installed package)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return root if is_checkout(root) else None


def checkout_roots():
    """fastnn checkouts, nearest first: the current directory and its parents, then the package's
    own checkout."""
    roots = []
    try:
        here = os.getcwd()
    except OSError:  # the working directory was deleted
        here = None
    while here:
        if is_checkout(here):
            roots.append(here)
        parent = os.path.dirname(here)
        here = parent if parent != here else None
    own = package_checkout()
    if own is not None and own not in roots:
        roots.append(own)
    return roots
