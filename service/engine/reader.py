"""The request reader of a compiled plan: one generated Python function per knowledge base.

Reading a request is the part of an evaluation that touches every finding, so it is where a general
loop over a findings table costs most (one pass with tuple unpacking, type dispatch and list
bookkeeping per finding). The same reading written out for one findings table is plain Python of
straight-line lookups: this module writes that source from the table and the index masks, and
compiles it once per knowledge base, as fastjsonschema does for JSON Schema. The knowledge stays data;
the generated function only encodes what plan.py's index says about it. `Plan.reader_source` keeps
the source for reading and debugging.

What the reader gives, for a request with the validated shape:

- facts: one value per finding path, as facts.build_facts gives them (None when unknown, a set as a
  frozenset, a set known only in part as a PartialSet, sensation areas derived from the status);
- covered: the mask of the rule groups that some value makes true (plan.py explains the bits);
- open: the mask of the rule groups with an atom on an unknown fact;
- partial: whether a set is known only in part, for which the index does not apply.

Input that validation would have refused (a scalar finding holding a list, a block that is not an
object) makes the reader raise (an internal error, a 500) rather than read it as some other value.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, NamedTuple

from service.engine.facts import SENSATION_AREAS, SENSATION_STATUS, sensation_areas
from service.engine.logic import Facts, PartialSet
from service.engine.model import Finding

AT_LEAST = "at_least"  # (AT_LEAST, n) indexes an at_least atom: true for every value from n up
BELOW = "below"  # (BELOW, n) indexes a below atom: true for every value under n
THRESHOLDS = (AT_LEAST, BELOW)
EMPTY_SET = ("empty",)  # indexes an `empty` atom: true for a complete set with no member
UNKNOWN_VALUE = -1  # in a reader's value table, for values that mean "not known" (masks are never negative)


class Scan(NamedTuple):
    facts: Facts
    open: int  # mask of the groups with an atom on an unknown fact
    covered: int  # mask of the groups with a true atom
    partial: bool  # a set known only in part: the index does not apply


Reader = Callable[[dict[str, Any]], Scan]


def compile_reader(
    findings: dict[str, Finding],
    index: dict[str, dict[Any, int]],
    unknown_masks: dict[str, int],
    unknown_true: dict[str, int],
) -> tuple[Reader, str]:
    """The reader for `findings`, given fact -> index key -> group mask, fact -> mask of the groups it
    leaves open when unknown, and fact -> mask of the groups it makes true when unknown (`unknown`
    atoms); returns the function and its source."""
    writer = _Writer()
    names = {path: f"f{i}" for i, path in enumerate(findings)}
    for path, finding in findings.items():
        writer.read(path, names[path], finding, index.get(path, {}))
    if SENSATION_STATUS in names and SENSATION_AREAS in names:
        areas, status = names[SENSATION_AREAS], names[SENSATION_STATUS]
        writer.line(f"{areas} = sensation_areas({status}, {areas})")
    for path, finding in findings.items():
        writer.cover_members(names[path], finding, index.get(path, {}))
    writer.line("open_ = 0")
    for path, name in names.items():
        if unknown_masks.get(path):
            writer.line(f"if {name} is None: open_ |= {writer.constant(unknown_masks[path])}")
        if unknown_true.get(path):
            writer.line(f"if {name} is None: covered |= {writer.constant(unknown_true[path])}")
    entries = ", ".join(f"{path!r}: {name}" for path, name in names.items())
    writer.line(f"return Scan({{{entries}}}, open_, covered, partial)")
    return writer.compile()


class _Writer:
    """Collects the reader's lines and the constants they name (masks as module-level names: a mask
    of thousands of bits is no literal Python accepts by default)."""

    def __init__(self) -> None:
        self.lines = ["covered = 0", "partial = False"]
        self.nodes: dict[tuple[str, ...], str] = {(): "request"}
        self.constants: dict[str, Any] = {}

    def line(self, text: str) -> None:
        self.lines.append(text)

    def constant(self, value: Any) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name

    def node(self, keys: tuple[str, ...]) -> str:
        # Each dict on the way to a finding is looked up once; a missing one reads as empty.
        if keys not in self.nodes:
            parent = self.node(keys[:-1])
            name = self.nodes[keys] = f"n{len(self.nodes)}"
            self.line(f"{name} = {parent}.get({keys[-1]!r}) or EMPTY")
        return self.nodes[keys]

    def read(self, path: str, name: str, finding: Finding, table: dict[Any, int]) -> None:
        *parent, leaf = path.split(".")
        self.line(f"{name} = {self.node(tuple(parent))}.get({leaf!r})")
        if finding.kind == "set":
            self.line(f"if {name} is None: pass")
            self.line(f"elif type({name}) is list: {name} = frozenset({name})")
            self.line(f"elif type({name}) is dict:")
            self.line(f"    {name} = PartialSet(frozenset({name}['present']), frozenset({name}['absent']))")
            self.line("    partial = True")
            if finding.unknown:
                self.line(f"elif {name} in {self.constant(frozenset(finding.unknown))}: {name} = None")
            return
        equal = {key: mask for key, mask in table.items() if not _is_threshold(key)}
        if finding.unknown:
            # One lookup says both: unknown (UNKNOWN_VALUE) or the groups the value makes true.
            marks = self.constant({**equal, **dict.fromkeys(finding.unknown, UNKNOWN_VALUE)})
            self.line(f"mask = {marks}.get({name})")
            self.line("if mask is not None:")
            self.line(f"    if mask < 0: {name} = None")
            self.line("    else: covered |= mask")
        elif equal:
            self.line(f"covered |= {self.constant(equal)}.get({name}, 0)")
        at_least = sorted(key[1] for key in table if _is_threshold(key) and key[0] == AT_LEAST)
        if at_least:
            # upto[k]: the groups of the first k thresholds, so one bisect finds every threshold met
            upto, mask = [0], 0
            for t in at_least:
                mask |= table[(AT_LEAST, t)]
                upto.append(mask)
            points, masks = self.constant(tuple(at_least)), self.constant(tuple(upto))
            self.line(f"if {name} is not None: covered |= {masks}[bisect_right({points}, {name})]")
        below = sorted(key[1] for key in table if _is_threshold(key) and key[0] == BELOW)
        if below:
            # from_[k]: the groups of thresholds k and above, all of which a value under threshold k meets
            from_, mask = [0], 0
            for t in reversed(below):
                mask |= table[(BELOW, t)]
                from_.append(mask)
            from_.reverse()
            points, masks = self.constant(tuple(below)), self.constant(tuple(from_))
            self.line(f"if {name} is not None: covered |= {masks}[bisect_right({points}, {name})]")

    def cover_members(self, name: str, finding: Finding, table: dict[Any, int]) -> None:
        # After sensation areas are derived: the members of a complete set, or its emptiness.
        members = {key: mask for key, mask in table.items() if key != EMPTY_SET}
        if finding.kind == "set" and members:
            self.line(f"if type({name}) is frozenset:")
            self.line(f"    for member in {name}: covered |= {self.constant(members)}.get(member, 0)")
        if finding.kind == "set" and EMPTY_SET in table:
            self.line(f"if {name} == EMPTY_FROZENSET: covered |= {self.constant(table[EMPTY_SET])}")

    def compile(self) -> tuple[Reader, str]:
        body = "\n".join(f"    {text}" for text in self.lines)
        source = f"def read(request):\n{body}\n"
        namespace: dict[str, Any] = {
            "EMPTY": _EMPTY,
            "EMPTY_FROZENSET": frozenset(),
            "PartialSet": PartialSet,
            "Scan": Scan,
            "bisect_right": bisect.bisect_right,
            "sensation_areas": sensation_areas,
            **self.constants,
        }
        # Only names and repr() literals written above go into the source: no knowledge text is code.
        # Bandit waiver (B102, exec): the knowledge base's finding paths enter only through repr(), as
        # string literals, and masks and value tables only as names bound in `namespace`; no request
        # value is in the source. tests/test_engine_equivalence.py holds the result to the plain engine.
        code = compile(source, "<knowledge reader>", "exec")
        exec(code, namespace)  # nosec B102 # names and repr() only: see the waiver above
        return namespace["read"], source


_EMPTY = MappingProxyType({})  # the block a missing one reads as: shared, so read-only


def _is_threshold(key: Any) -> bool:
    return type(key) is tuple and key[0] in THRESHOLDS
