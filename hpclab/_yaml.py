"""The one place hpclab reads YAML: safe, strict and bounded.

:func:`load_yaml` is ``yaml.safe_load`` (no Python objects, no tags beyond YAML's own) with the
guards a file from a user, a colleague or the internet needs. Each refusal is one
:class:`hpclab.HpclabError` line naming the file (and the line where there is one):

=====================  ==================================================================
guard                  bound
=====================  ==================================================================
file size              at most :data:`MAX_BYTES` (1 MiB; the shipped files are ~10 kB, and the
                       pure-Python parser, needed for the guards below, reads ~1 MB/s)
encoding               strict UTF-8 (a BOM is allowed); the first bad byte is named by line
                       and column
duplicate keys         refused in every mapping (YAML says keys are unique; PyYAML keeps the
                       last one silently). Keys brought in by a ``<<`` merge may be overridden.
nesting depth          at most :data:`MAX_DEPTH` (64) levels of mappings and sequences
alias expansion        at most :data:`MAX_NODES` (1,000,000) nodes and :data:`MAX_CHARS`
                       (64 Mi) characters of scalars once every alias is expanded (the
                       "billion laughs" bomb); recursive aliases are refused
=====================  ==================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from hpclab._validate import HpclabError, decode_utf8

__all__ = ["load_yaml", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "MAX_CHARS"]

#: largest YAML file read (bytes)
MAX_BYTES = 2**20
#: deepest nesting of mappings and sequences
MAX_DEPTH = 64
#: most nodes of a document with every alias expanded
MAX_NODES = 1_000_000
#: most characters of scalars of a document with every alias expanded
MAX_CHARS = 64 * 2**20


class _Refused(Exception):
    """Raised inside the loader; turned into one HpclabError line by :func:`load_yaml`."""

    def __init__(self, message: str, mark=None):
        super().__init__(message)
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts nesting while composing and refuses duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        seen = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise _Refused(f"duplicate key {key_node.value!r} (first at line {seen[key] + 1})",
                               key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return node


def _expanded_size(root) -> tuple[int, int]:
    """(nodes, scalar characters) of the node graph with aliases expanded; iterative, memoised
    per node (aliases share node objects), so a bomb is measured without being built."""
    memo: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            n = 1 + sum(memo[id(c)][0] for c in children)
            c = sum(memo[id(c)][1] for c in children)
            memo[key] = (n, c)
            if n > MAX_NODES:
                raise _Refused(f"expands to more than {MAX_NODES:,} nodes once its aliases are "
                               "expanded (an alias bomb?)", node.start_mark)
            if c > MAX_CHARS:
                raise _Refused(f"expands to more than {MAX_CHARS:,} characters once its aliases are "
                               "expanded (an alias bomb?)", node.start_mark)
            continue
        if key in memo:
            continue
        if isinstance(node, yaml.ScalarNode):
            memo[key] = (1, len(node.value))
            continue
        if key in on_path:
            raise _Refused("has a recursive alias (a node that contains itself)", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _Refused("has a recursive alias (a node that contains itself)", child.start_mark)
            if id(child) not in memo:
                stack.append((child, False))
    return memo[id(root)]


def _children(node):
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def load_yaml(path_or_text, *, source: str | None = None):
    """Read one YAML document safely (see the module docstring for the guards).

    Parameters
    ----------
    path_or_text : path-like, str or bytes
        A :class:`pathlib.Path` (or other ``os.PathLike``) is read as a file; a ``str`` or
        ``bytes`` is the document itself.
    source : str, optional
        The name used in error messages (default: the file's path, or ``<text>``).

    Returns
    -------
    object
        What ``yaml.safe_load`` returns (None for an empty document).

    Raises
    ------
    HpclabError
        One line: ``user.yaml: not valid YAML (line 3, column 7): duplicate key 'alpha' (first at
        line 2)``; ``user.yaml:4: not UTF-8 ...``; ``user.yaml: cannot read (No such file ...)``.
    """
    if isinstance(path_or_text, os.PathLike):
        path = Path(path_or_text)
        source = source or str(path)
        try:
            size = path.stat().st_size
            if path.is_dir():
                raise HpclabError(f"{source}: is a folder, not a YAML file")
            if size > MAX_BYTES:
                raise HpclabError(f"{source}: {size:,} bytes; YAML files are read up to "
                                  f"{MAX_BYTES:,} bytes")
            with open(path, "rb") as fh:
                data = fh.read(MAX_BYTES + 1)
        except OSError as exc:
            raise HpclabError(f"{source}: cannot read ({exc.strerror or type(exc).__name__})") from None
    elif isinstance(path_or_text, (str, bytes)):
        source = source or "<text>"
        data = path_or_text
    else:
        raise HpclabError(f"load_yaml takes a path, str or bytes, got {type(path_or_text).__name__}")
    if len(data) > MAX_BYTES:
        raise HpclabError(f"{source}: more than {MAX_BYTES:,} bytes; YAML is read up to {MAX_BYTES:,}")
    text = decode_utf8(data, source) if isinstance(data, bytes) else data
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise HpclabError(f"{source}: not valid YAML{_where(exc.mark)}: {exc}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise HpclabError(f"{source}:{line}: not valid YAML: character {exc.character:#06x} is not allowed "
                          "(control characters other than tab and newline; is it a binary file?)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HpclabError(f"{source}: not valid YAML{_where(mark)}: {problem}") from None
    except RecursionError:  # pragma: no cover - the depth guard comes first
        raise HpclabError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _where(mark) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
