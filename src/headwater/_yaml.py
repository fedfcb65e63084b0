"""YAML parsing with limits: every YAML file Headwater reads goes through here.

PyYAML's safe loader still accepts documents that are hostile to whatever walks the result:

* a **recursive alias** (``a: &x [*x]``) builds a node that contains itself, so any recursive
  walk never ends (``RecursionError``);
* an **alias bomb** ("billion laughs": ten aliases of ten aliases of ...) is a few hundred bytes
  that expand to billions of nodes;
* **deep nesting** (``[[[[...]]]]``) exhausts the interpreter's recursion limit in the composer;
* a **huge integer** (thousands of digits) makes ``int()`` raise ``ValueError`` (Python's
  digit limit) or yields a number no setting can mean.

:class:`LimitedLoader` refuses each of these while composing, with a
:class:`yaml.MarkedYAMLError` that carries the line, so the callers' existing "not valid YAML at
line N" handling names the line and raises their own typed error (``PolicyError``,
``ConfigError``, ``RoutingError``). Aliases that are neither recursive nor explosive still work.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = [
    "INT_TAG",
    "MAX_DEPTH",
    "MAX_INT",
    "MAX_NODES",
    "LimitedLoader",
    "YamlLimitError",
    "compose",
    "compose_all",
    "construct_scalar",
    "safe_load",
]

MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences accepted."""
MAX_NODES = 100_000
"""Most nodes a document may expand to, counting every use of an alias in full."""
MAX_INT = 2**63 - 1
"""Integers must fit in 64 bits (signed): no setting means more, and bigger ones are hostile."""
INT_TAG = "tag:yaml.org,2002:int"
_MAX_INT_TEXT = 64
"""Longest integer literal parsed at all (YAML allows ``_`` separators and base prefixes)."""


class YamlLimitError(yaml.MarkedYAMLError):
    """A document exceeded a limit of :class:`LimitedLoader` (``problem`` says which)."""


class LimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses recursive aliases, alias bombs, deep nesting and
    integers outside 64 bits while composing (before anything walks the nodes)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        # id(node) -> (node, expanded size); the node is kept so its id is never reused. A node
        # is entered here only once composed, so an alias to a node not yet here is recursive.
        self._sizes: dict[int, tuple[yaml.Node, int]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise YamlLimitError(None, None, f"alias *{event.anchor} refers to a node that contains "
                                     "it (recursive aliases are not allowed)", event.start_mark)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._size(v) for v in node.value)
        else:
            size = 1
            if node.tag == INT_TAG:
                self._check_int(node)
        if size > MAX_NODES:
            raise YamlLimitError(None, None, f"the document expands to more than {MAX_NODES} nodes "
                                 "through aliases", node.start_mark)
        self._sizes[id(node)] = (node, size)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:  # noqa: D102 - PyYAML hook
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError):
            # A value its tag cannot hold (``2024-02-30``): name the node's line.
            raise YamlLimitError(None, None, f"not a valid {str(node.tag).rsplit(':', 1)[-1]}",
                                 node.start_mark) from None

    def _size(self, node: yaml.Node) -> int:
        entry = self._sizes.get(id(node))
        return entry[1] if entry is not None else 1

    def _check_int(self, node: yaml.ScalarNode) -> None:
        value = None
        if len(node.value) <= _MAX_INT_TEXT:
            try:
                value = self.construct_yaml_int(node)
            except ValueError:
                value = None
        if value is None or not -MAX_INT - 1 <= value <= MAX_INT:
            raise YamlLimitError(None, None, "integer out of range (it must fit in 64 bits)", node.start_mark)


def _run(text: str, fn: Any) -> Any:
    loader = LimitedLoader(text)
    try:
        return fn(loader)
    except RecursionError:  # pragma: no cover - the depth limit comes first
        raise YamlLimitError(None, None, "nested too deeply", None) from None
    finally:
        loader.dispose()


def compose(text: str) -> yaml.Node | None:
    """The node tree of a single-document YAML text, within the limits."""
    return _run(text, lambda loader: loader.get_single_node())


def compose_all(text: str) -> list[yaml.Node]:
    """The node trees of every document of a YAML text, within the limits."""

    def all_nodes(loader: LimitedLoader) -> list[yaml.Node]:
        out = []
        while loader.check_node():
            out.append(loader.get_node())
        return out

    return _run(text, all_nodes)


def safe_load(text: str) -> Any:
    """Like ``yaml.safe_load``, within the limits; a value its tag cannot hold (``2024-02-30``)
    is a :class:`YamlLimitError` too."""
    try:
        return _run(text, lambda loader: loader.get_single_data())
    except (ValueError, OverflowError, TypeError) as err:
        raise YamlLimitError(None, None, f"a value cannot be read ({type(err).__name__})", None) from None


_SCALARS = yaml.SafeLoader("")
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str", "timestamp",
                                                             "binary"))


def construct_scalar(node: yaml.Node) -> Any:
    """The Python value of a scalar node, resolved as ``yaml.safe_load`` would; a value its tag
    cannot hold (``2024-02-30``), a non-scalar or an unusual tag is a :class:`YamlLimitError`."""
    if not isinstance(node, yaml.ScalarNode) or node.tag not in _SCALAR_TAGS:
        raise YamlLimitError(None, None, f"expected a plain value, got {node.tag}", node.start_mark)
    if node.tag == INT_TAG and (len(node.value) > _MAX_INT_TEXT):
        raise YamlLimitError(None, None, "integer out of range (it must fit in 64 bits)", node.start_mark)
    try:
        # The tag's constructor directly: ``construct_object`` would remember every node it saw.
        return _SCALARS.yaml_constructors[node.tag](_SCALARS, node)
    except (ValueError, OverflowError, TypeError, yaml.YAMLError):
        raise YamlLimitError(None, None, f"not a valid {node.tag.rsplit(':', 1)[-1]}: {node.value[:40]!r}",
                             node.start_mark) from None
