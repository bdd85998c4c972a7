"""The tokens a speculative step drafts, as a tree (a chain is the tree with one child per node).

Node ``i`` (0-based) is a drafted token; ``parents[i]`` is the node it continues, or -1 for a
child of the root: the last token the target emitted, which the verify step processes with the
drafted ones (its KV is not cached yet, as in plain decode). ``depths[i]`` counts the drafted
tokens on the path from the root to node ``i``, itself included (a child of the root: 1).

The verify step runs the target once over ``1 + n`` query tokens per request (the root and the
``n`` nodes). Each query attends the request's cached tokens plus, among the step's new tokens,
its ancestors and itself (tree attention, SpecInfer's topology-aware causal mask; a chain is the
ordinary causal mask of a prefill chunk): the root 1 new key, node ``i`` ``depths[i] + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from decodex.core.errors import ArgumentError, SpecError
from decodex.workloads.batch import is_whole

MAX_TREE_NODES = 1024  # drafted tokens per request and step (published trees: 4-60 nodes; DySpec up to 768)
TREES_DIR = Path(__file__).resolve().parent / "catalog" / "trees"  # named trees as data (named_tree)


@dataclass(frozen=True)
class TokenTree:
    """Drafted tokens of one request in one step (see module docstring); ``parents[i]`` in
    [-1, i - 1], so that a node follows its parent in the order the tokens are fed."""

    parents: tuple[int, ...]

    def __post_init__(self) -> None:
        parents = self.parents
        if isinstance(parents, str | bytes) or not isinstance(parents, Sequence):
            raise ArgumentError(f"token tree: parents must be a sequence of node indices, got {parents!r:.80}")
        if len(parents) > MAX_TREE_NODES:
            raise ArgumentError(f"token tree: {len(parents)} drafted tokens, more than {MAX_TREE_NODES}")
        for index, parent in enumerate(parents):
            if not is_whole(parent) or not -1 <= parent < index:
                raise ArgumentError(f"token tree: parents[{index}] = {parent!r} must be an integer in "
                                    f"[-1, {index - 1}] (-1: a child of the root; otherwise an earlier node)")
        object.__setattr__(self, "parents", tuple(int(p) for p in parents))

    @classmethod
    def chain(cls, length: int) -> TokenTree:
        """``length`` drafted tokens one after another (a draft model's or a self-draft's k tokens)."""
        if not is_whole(length) or not 0 <= length <= MAX_TREE_NODES:
            raise ArgumentError(f"token tree: chain length {length!r} must be an integer in [0, {MAX_TREE_NODES}]")
        return cls(tuple(range(-1, int(length) - 1)))

    @classmethod
    def branching(cls, widths: Sequence[int]) -> TokenTree:
        """A full tree whose level ``d`` gives every node of level ``d - 1`` (the root for level 1)
        ``widths[d - 1]`` children: Medusa's top-k per head, e.g. (2, 2, 1) has 2 + 4 + 4 nodes.
        Nodes are numbered level by level."""
        if isinstance(widths, str | bytes) or not isinstance(widths, Sequence):
            raise ArgumentError(f"token tree: widths must be a sequence of children per level, got {widths!r:.80}")
        parents: list[int] = []
        level = [-1]
        for depth, width in enumerate(widths, start=1):
            if not is_whole(width) or not 1 <= width <= MAX_TREE_NODES:
                raise ArgumentError(f"token tree: widths[{depth - 1}] = {width!r} must be an integer in "
                                    f"[1, {MAX_TREE_NODES}]")
            if len(parents) + len(level) * int(width) > MAX_TREE_NODES:
                raise ArgumentError(f"token tree: widths {tuple(widths)} make more than {MAX_TREE_NODES} nodes")
            start = len(parents)
            parents += [parent for parent in level for _ in range(int(width))]
            level = list(range(start, len(parents)))
        return cls(tuple(parents))

    @classmethod
    def spine(cls, depth: int, width: int) -> TokenTree:
        """A top-1 chain of ``depth`` drafted tokens whose every level also offers ``width - 1``
        ranked alternatives that end there (``depth x width`` nodes; width 1: the chain): the
        cheapest way to widen a draft, one candidate list per position."""
        for name, value in (("depth", depth), ("width", width)):
            if not is_whole(value) or not (0 if name == "depth" else 1) <= value <= MAX_TREE_NODES:
                raise ArgumentError(f"token tree: spine {name} {value!r} must be an integer in "
                                    f"[{0 if name == 'depth' else 1}, {MAX_TREE_NODES}]")
        if int(depth) * int(width) > MAX_TREE_NODES:
            raise ArgumentError(f"token tree: a spine of {depth} x {width} nodes is more than {MAX_TREE_NODES}")
        parents: list[int] = []
        top = -1
        for _ in range(int(depth)):
            level = len(parents)
            parents += [top] * int(width)  # the top-1 candidate first, then the alternatives
            top = level
        return cls(tuple(parents))

    @classmethod
    def from_paths(cls, paths: Sequence[Sequence[int]]) -> TokenTree:
        """A tree from Medusa's notation: each path lists, level by level, the rank of the token
        taken from that level's head (``[0, 1]``: the second-ranked token after the top-1). Every
        prefix of a path must be a path too; nodes are numbered by depth, then path."""
        if isinstance(paths, str | bytes) or not isinstance(paths, Sequence):
            raise ArgumentError(f"token tree: paths must be a sequence of rank lists, got {paths!r:.80}")
        keys = []
        for index, path in enumerate(paths):
            if isinstance(path, str | bytes) or not isinstance(path, Sequence) or not path or not all(
                    is_whole(rank) and rank >= 0 for rank in path):
                raise ArgumentError(f"token tree: paths[{index}] = {path!r:.60} must be a non-empty list of ranks >= 0")
            keys.append(tuple(int(rank) for rank in path))
        if len(set(keys)) != len(keys):
            raise ArgumentError("token tree: a path is listed twice")
        order = sorted(keys, key=lambda key: (len(key), key))
        index_of = {key: i for i, key in enumerate(order)}
        parents = []
        for key in order:
            if len(key) > 1 and key[:-1] not in index_of:
                raise ArgumentError(f"token tree: path {list(key)} continues {list(key[:-1])}, which is not a path")
            parents.append(-1 if len(key) == 1 else index_of[key[:-1]])
        return cls(tuple(parents))

    @property
    def size(self) -> int:
        """Drafted tokens (nodes)."""
        return len(self.parents)

    @property
    def query_tokens(self) -> int:
        """Tokens the verify step runs the target over: the root and every node."""
        return len(self.parents) + 1

    @cached_property
    def depths(self) -> tuple[int, ...]:
        """Drafted tokens from the root to each node, the node included (a child of the root: 1)."""
        depths: list[int] = []
        for parent in self.parents:
            depths.append(1 if parent < 0 else depths[parent] + 1)
        return tuple(depths)

    @property
    def depth(self) -> int:
        """The longest path: the most drafted tokens one step can accept."""
        return max(self.depths, default=0)

    @property
    def is_chain(self) -> bool:
        """Whether every node has at most one child (the verify step's mask is the causal one)."""
        return self.parents == tuple(range(-1, len(self.parents) - 1))

    @property
    def attended_new_keys(self) -> int:
        """New keys the step's queries attend in total, per request: 1 for the root, depth + 1 for
        each node; (n + 1)(n + 2) / 2 for a chain of n, as a causal chunk of n + 1 tokens."""
        return 1 + sum(depth + 1 for depth in self.depths)

    def children(self, node: int) -> tuple[int, ...]:
        """The nodes that continue ``node`` (-1: the root)."""
        return tuple(i for i, parent in enumerate(self.parents) if parent == node)

    def expanding_per_level(self) -> tuple[int, ...]:
        """For each level ``j`` = 1 ... depth, the nodes of depth ``j - 1`` that have children (the
        root for level 1): what a draft runs over to propose level ``j`` (a chain: all ones)."""
        depths = (0, *self.depths)  # index 0 is the root, node i is index i + 1
        expanding = {parent + 1 for parent in self.parents}
        counts = [0] * self.depth
        for index in expanding:
            counts[depths[index]] += 1
        return tuple(counts)


def named_tree(name: str, root: Path = TREES_DIR) -> TokenTree:
    """A published tree by name (the ``[NAME]`` tables of ``workloads/catalog/trees/*.toml``,
    each with its ``paths`` in Medusa's notation and its ``source``); ArgumentError lists the
    names, SpecError names a bad file and field."""
    from decodex.core.input_files import read_toml

    known: dict[str, tuple[Path, object]] = {}
    for file in sorted(root.glob("*.toml")):
        for key, table in read_toml(file).items():
            known[key] = (file, table)
    if name not in known:
        raise ArgumentError(f"tree: unknown tree {name!r}; known: {', '.join(sorted(known)) or 'none'}")
    file, table = known[name]
    if not isinstance(table, dict) or "paths" not in table:
        raise SpecError(str(file), f"{name}.paths", "missing: the tree's paths of top-k ranks")
    try:
        return TokenTree.from_paths(table["paths"])
    except ArgumentError as err:
        raise SpecError(str(file), f"{name}.paths", str(err)) from None

