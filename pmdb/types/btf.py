"""The kernel's BTF as a type source: vmlinux BTF and split (module) BTF.

A dump carries the kernel's BTF between ``__start_BTF`` and ``__stop_BTF``;
with it pmdb knows every kernel type without a vmlinux. Opening only scans the
type section once for record offsets; names are looked up by searching the
string section (C speed) rather than by building a dict of ~130k names, and
a model Type is built only for the ids actually reached, its members and
targets filled in by the model's lazy ``loader``.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from pmdb.errors import FormatError, PmdbError, quote
from pmdb.types import btf_format as f
from pmdb.types.model import VOID, Member, Type

if TYPE_CHECKING:
    from pmdb.lookup_memo import LookupMemo

_MAX_CHAIN = 64          # longest typedef/qualifier/pointer chain believed before calling it a cycle
_QUALS = {f.CONST: "const", f.VOLATILE: "volatile", f.RESTRICT: "restrict"}
_TAG_KINDS = {"struct": (f.STRUCT,), "union": (f.UNION,), "enum": (f.ENUM, f.ENUM64)}
_PLAIN_KINDS = (f.INT, f.FLOAT, f.TYPEDEF)


_INT_WORDS = {"signed", "unsigned", "short", "long", "int", "char"}


def c_int_name(name: str) -> str:
    """How gcc (and so BTF) spells an integer type: ``unsigned long`` is
    ``long unsigned int``; other names come back unchanged."""
    words = name.split()
    if not words or not set(words) <= _INT_WORDS or words.count("long") > 2:
        return name
    unsigned, longs = "unsigned" in words, words.count("long")
    if "char" in words:
        return "unsigned char" if unsigned else "signed char" if "signed" in words else "char"
    size = "short" if "short" in words else " ".join(["long"] * longs)
    parts = [size] if size else []
    parts += ["unsigned"] if unsigned else []
    return " ".join(parts + ["int"])


class _Readable(Protocol):
    def read_at(self, offset: int, n: int) -> bytes: ...


def _load_blob(data: bytes | bytearray | memoryview | _Readable, offset: int,
               size: int | None) -> tuple[f.Header, bytes | memoryview]:
    """The header and exactly the bytes it covers, read from bytes or a ByteSource."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        blob = memoryview(data)[offset:] if size is None else memoryview(data)[offset:offset + size]
        hdr = f.parse_header(bytes(blob[:f.HEADER.size]))
        f.check_sections(hdr, len(blob))
        return hdr, blob
    try:
        head = data.read_at(offset, f.HEADER.size)
        hdr = f.parse_header(head)
        if size is not None:
            f.check_sections(hdr, size)
        raw = data.read_at(offset, hdr.total)
        f.check_sections(hdr, len(raw))
        return hdr, raw
    except FormatError:
        raise
    except PmdbError as err:
        raise FormatError(f"cannot read the BTF: {err}") from None


class BtfTypes:
    """One BTF blob (with its ``base`` for split BTF) as a pmdb TypeSource."""

    def __init__(self, data: bytes | bytearray | memoryview | _Readable, base: BtfTypes | None = None,
                 *, offset: int = 0, size: int | None = None, ptr_size: int = 8,
                 index: tuple[array, array] | None = None) -> None:
        """``index``: what ``index_arrays()`` gave for the same bytes before (from a cache),
        checked to fit the type section instead of scanning it again."""
        hdr, blob = _load_blob(data, offset, size)
        self.header = hdr
        self.base = base
        self.ptr_size: int = base.ptr_size if base is not None else ptr_size
        start = hdr.hdr_len
        self._words = f.words(blob[start + hdr.type_off:start + hdr.type_off + hdr.type_len], hdr.big_endian)
        self._strs = bytes(blob[start + hdr.str_off:start + hdr.str_off + hdr.str_len])
        if hdr.str_len and self._strs[-1] != 0:
            raise FormatError("BTF string section does not end with a NUL byte")
        if index is None:
            self._offs, names = f.scan(self._words)
        else:
            self._offs = f.checked_offsets(self._words, index[0])
            names = f.checked_names(self._words, self._offs, index[1])
        # Split BTF numbers its types and strings after its base's (libbpf's rule).
        self.start_id = base.end_id if base is not None else 1
        self.start_str = base.end_str if base is not None else 0
        self._name_offs = names          # name_off of every own record (what a name search reads)
        self._name_bytes: bytes | None = None
        self._kinds: array | None = None
        self._types: dict[int, Type] = {0: VOID}
        self._found: dict[tuple[str, str | None], Type | None] = {}
        self._acyclic: set[int] = set()
        self.memo: LookupMemo | None = None     # remembered name lookups (a kernel's own BTF)

    # -- numbering ---------------------------------------------------------

    @property
    def end_id(self) -> int:
        """One past the last type id (where a split BTF over this one starts)."""
        return self.start_id + len(self._offs)

    @property
    def end_str(self) -> int:
        return self.start_str + len(self._strs)

    def __len__(self) -> int:
        return len(self._offs)

    def index_arrays(self) -> tuple[array, array]:
        """(where each type record starts, its name offset): what the one scan over the
        records gives, to cache."""
        return self._offs, self._name_offs

    def _record(self, tid: int) -> tuple[int, int, int, bool, int, int]:
        """(word offset, kind, vlen, kind_flag, name_off, size_or_type) of an own id."""
        i = tid - self.start_id
        if not 0 <= i < len(self._offs):
            raise FormatError(f"BTF type id {tid} is out of range (types {self.start_id}..{self.end_id - 1})")
        p = self._offs[i]
        w = self._words
        info = w[p + 1]
        return p, (info >> 24) & 31, info & 0xFFFF, bool(info >> 31), w[p], w[p + 2]

    def _owner(self, tid: int) -> BtfTypes:
        """The BtfTypes (this one or a base) that defines ``tid``."""
        src: BtfTypes = self
        while tid < src.start_id and src.base is not None:
            src = src.base
        return src

    def kind_of(self, tid: int) -> int:
        """The raw BTF kind number of a type id (0 for void)."""
        src = self._owner(tid)
        return 0 if tid == 0 else src._record(tid)[1]

    def string(self, off: int) -> str:
        """The NUL-terminated string at a (global) string offset."""
        if off < self.start_str and self.base is not None:
            return self.base.string(off)
        local = off - self.start_str
        if not 0 <= local < len(self._strs):
            raise FormatError(f"BTF string offset {off:#x} is out of range (strings end at {self.end_str:#x})")
        end = self._strs.index(0, local)
        return self._strs[local:end].decode("utf-8", "replace")

    # -- TypeSource ----------------------------------------------------------

    def find_type(self, name: str, kind: str | None = None) -> Type | None:
        """A named type; ``kind`` is "struct"/"union"/"enum" for tagged names, None
        for typedefs and base types. Complete definitions win over forward ones."""
        key = (name, kind)
        if key not in self._found:
            tid = self.find_id(name, kind)
            self._found[key] = None if tid is None else self.type_by_id(tid)
        return self._found[key]

    def find_id(self, name: str, kind: str | None = None) -> int | None:
        """The type id of a named type (see find_type), searching this BTF then its base."""
        if kind is None:
            kinds: tuple[int, ...] = _PLAIN_KINDS
            name = c_int_name(name)
        elif kind in _TAG_KINDS:
            kinds = _TAG_KINDS[kind]
        else:
            return None
        if self.memo is not None and self.base is None:
            return self._remembered_id(name, kind, kinds)
        return self._scanned_id(name, kind, kinds)

    def _remembered_id(self, name: str, kind: str | None, kinds: tuple[int, ...]) -> int | None:
        """find_id through the memo (a kernel's own BTF): a remembered id that still names
        a complete type of that name and kind here is the answer, else the scan's is (and is
        remembered, unless it is a forward declaration: those are rare, and scanned again)."""
        assert self.memo is not None
        key = f"{kind or ''} {name}"
        answer = self.memo.get(key)
        if answer == ():
            return None
        if answer is not None and len(answer) == 1 and self._complete_named(answer[0], name, kinds):
            return answer[0]
        tid = self._scanned_id(name, kind, kinds)
        if tid is None or self._complete_named(tid, name, kinds):
            self.memo.put(key, () if tid is None else (tid,))
        return tid

    def _complete_named(self, tid: int, name: str, kinds: tuple[int, ...]) -> bool:
        """Whether own type id tid is a complete type of one of kinds called name."""
        if not self.start_id <= tid < self.end_id:
            return False
        _, k, vlen, _, name_off, _ = self._record(tid)
        if k not in kinds or not (vlen or k not in (f.ENUM, f.ENUM64)):
            return False
        try:
            return self.string(name_off) == name
        except FormatError:
            return False

    def _scanned_id(self, name: str, kind: str | None, kinds: tuple[int, ...]) -> int | None:
        """find_id by a search of the name offsets (then the base's)."""
        partial = None      # a forward declaration, or an enum without enumerators
        for tid in self._ids_named(name):
            _, k, vlen, kflag, _, _ = self._record(tid)
            if k in kinds and (vlen or k not in (f.ENUM, f.ENUM64)):
                return tid
            if partial is None and (k in kinds or (k == f.FWD and kflag == (kind == "union")
                                                   and kind in ("struct", "union"))):
                partial = tid
        if self.base is not None:
            hit = self.base.find_id(name, kind)
            if hit is not None and (partial is None or self.base.kind_of(hit) != f.FWD):
                return hit
        return partial

    def close(self) -> None:
        """Keep the name lookups this session learnt for the next (see find_id)."""
        if self.memo is not None:
            self.memo.save()

    def type_names(self) -> Iterable[str]:
        """Every type name, tagged ones spelled ``struct x`` (for completion)."""
        names, kinds = self._index()
        tags = {f.STRUCT: "struct ", f.UNION: "union ", f.ENUM: "enum ", f.ENUM64: "enum "}
        seen: set[str] = set()
        for i, off in enumerate(names):
            k = kinds[i]
            if off and (k in tags or k in _PLAIN_KINDS):
                name = tags.get(k, "") + self.string(off)
                if name not in seen:
                    seen.add(name)
                    yield name

    def variable_type(self, name: str) -> Type | None:
        """The type of a variable BTF lists (kernel BTF lists only per-CPU ones)."""
        for tid in self._ids_named(name):
            if self.kind_of(tid) == f.VAR:
                return self.type_by_id(self._record(tid)[5])
        return self.base.variable_type(name) if self.base is not None else None

    def function_type(self, name: str) -> Type | None:
        """The prototype of a function BTF lists (kind "func", named)."""
        for tid in self._ids_named(name):
            if self.kind_of(tid) == f.FUNC:
                return self.type_by_id(tid)
        return self.base.function_type(name) if self.base is not None else None

    def datasec(self, name: str) -> list[tuple[str, int, int]]:
        """(variable, offset, size) of each variable in a data section such as
        ``.data..percpu``: where per-CPU variables sit in each CPU's area."""
        for tid in self._ids_named(name):
            p, k, vlen, _, _, _ = self._record(tid)
            if k == f.DATASEC:
                w = self._words
                out = []
                for j in range(vlen):
                    q = p + 3 + 3 * j
                    var = self._owner(w[q])._record(w[q])
                    out.append((self.string(var[4]), w[q + 1], w[q + 2]))
                return out
        return self.base.datasec(name) if self.base is not None else []

    # -- name search -----------------------------------------------------------

    def _index(self) -> tuple[array, array]:
        """name_off (from the scan) and kind (built once, lazily) of every own record, as
        flat arrays."""
        names = self._name_offs
        if self._kinds is None:
            w = self._words
            self._kinds = array("B", [(w[p + 1] >> 24) & 31 for p in self._offs])
        return names, self._kinds

    def _string_offsets(self, name: str) -> Iterator[int]:
        """Global offsets of the string ``name`` here and in the bases, each found when
        asked for: a lookup that the first one settles stops there instead of scanning the
        rest of the strings (~1 ms a name on a kernel's 1.8 MB) for copies that a
        deduplicated string section does not hold."""
        raw = name.encode()
        needle = b"\0" + raw + b"\0"
        # split BTF has no leading NUL: its first string sits at offset 0
        if self._strs.startswith(raw + b"\0"):
            yield self.start_str
        i = self._strs.find(needle)
        while i >= 0:
            yield self.start_str + i + 1
            i = self._strs.find(needle, i + 1)
        if self.base is not None:
            yield from self.base._string_offsets(name)

    def _ids_named(self, name: str) -> Iterator[int]:
        """Own type ids whose name is ``name``, in id order (found in the bytes of the
        name_off array: bytes.find runs at memchr speed, array.index compares objects)."""
        if not name:
            return
        raw = self._names_bytes()
        width = self._words.itemsize
        for off in self._string_offsets(name):
            needle = off.to_bytes(width, sys.byteorder)
            at = raw.find(needle)
            while at >= 0:
                if at % width == 0:
                    yield self.start_id + at // width
                    at = raw.find(needle, at + width)
                else:
                    at = raw.find(needle, at + 1)

    def _names_bytes(self) -> bytes:
        if self._name_bytes is None:
            self._name_bytes = self._name_offs.tobytes()
        return self._name_bytes

    # -- building Types ------------------------------------------------------------

    def type_by_id(self, tid: int) -> Type:
        """The model Type for a BTF id, built on first use and then shared."""
        src = self._owner(tid)
        if src is not self:
            return src.type_by_id(tid)
        t = self._types.get(tid)
        if t is None:
            t = self._make(tid)
            self._types[tid] = t
        return t

    def _make(self, tid: int) -> Type:
        p, k, vlen, kflag, name_off, sz = self._record(tid)
        name = self.string(name_off) if name_off else ""
        w = self._words
        if k == f.INT:
            enc = w[p + 3] >> 24
            kind = "bool" if enc & f.INT_BOOL else "int"
            return Type(kind, name, sz, signed=bool(enc & f.INT_SIGNED))
        if k == f.FLOAT:
            return Type("float", name, sz, signed=True)
        if k in (f.STRUCT, f.UNION):
            return Type("struct" if k == f.STRUCT else "union", name, sz,
                        loader=self._members_loader(p, vlen, kflag))
        if k in (f.ENUM, f.ENUM64):
            return Type("enum", name, sz, signed=kflag, loader=self._enum_loader(p, k, vlen, kflag))
        if k == f.FWD:
            return self._forward(name, "union" if kflag else "struct")
        if k == f.PTR:
            return Type("pointer", "", self.ptr_size, loader=self._target_loader(tid, sz))
        if k == f.ARRAY:
            elem, count = w[p + 3], w[p + 5]
            return Type("array", "", count * self.raw_size(elem), count=count,
                        loader=self._target_loader(tid, elem))
        if k == f.TYPEDEF:
            return Type("typedef", name, self.raw_size(sz), loader=self._target_loader(tid, sz))
        if k in _QUALS:
            return Type("qual", "", self.raw_size(sz), qualifier=_QUALS[k],
                        loader=self._target_loader(tid, sz))
        if k == f.TYPE_TAG:
            return self._checked(tid, lambda: self.type_by_id(sz))  # a tag is invisible to C
        if k in (f.FUNC, f.FUNC_PROTO):
            return self._func(tid, name)
        if k == f.VAR:
            if self.kind_of(sz) in (f.VAR, f.DATASEC, f.DECL_TAG):
                raise FormatError(f"BTF variable {quote(name)} (id {tid}) has no type")
            return self.type_by_id(sz)
        raise FormatError(f"BTF type id {tid} is a {f.KIND_NAMES[k]}, not a type")

    def _forward(self, name: str, kind: str) -> Type:
        """A forward declaration stands for the complete type when BTF has one."""
        tid = self.find_id(name, kind) if name else None
        if tid is not None and self.kind_of(tid) != f.FWD:
            return self.type_by_id(tid)
        return Type(kind, name, 0, _members=[])

    def _func(self, tid: int, name: str) -> Type:
        """Parameters are plain fields of the model, so they are built now; the
        return type waits for the loader."""
        _, k, _, _, _, sz = self._record(tid)
        proto = sz if k == f.FUNC else tid
        if self.kind_of(proto) != f.FUNC_PROTO:
            raise FormatError(f"BTF func {quote(name)} (id {tid}) does not point at a prototype")
        self._check_chain(tid)
        src = self._owner(proto)
        p, _, vlen, _, _, ret = src._record(proto)
        params = [src._words[p + 3 + 2 * j + 1] for j in range(vlen)]
        variadic = bool(params) and params[-1] == 0   # a trailing void parameter means "..."
        if variadic:
            params.pop()
        t = Type("func", name if k == f.FUNC else "", 0, variadic=variadic,
                 params=[self.type_by_id(a) for a in params])
        t.loader = self._target_loader(tid, ret)
        return t

    def _checked(self, tid: int, build: Callable[[], Type]) -> Type:
        self._check_chain(tid)
        return build()

    # -- lazy loaders ---------------------------------------------------------------

    def _target_loader(self, tid: int, target: int) -> Callable[[Type], None]:
        def load(t: Type) -> None:
            self._check_chain(tid)
            t.target = self.type_by_id(target)
        return load

    def _members_loader(self, p: int, vlen: int, kflag: bool) -> Callable[[Type], None]:
        def load(t: Type) -> None:
            w = self._words
            members = []
            for j in range(vlen):
                q = p + 3 + 3 * j
                name = self.string(w[q]) if w[q] else ""
                mtype = self.type_by_id(w[q + 1])
                bit_off, bit_size = w[q + 2], 0
                if kflag:
                    bit_off, bit_size = bit_off & 0xFFFFFF, bit_off >> 24
                else:
                    bit_off, bit_size = self._old_bitfield(w[q + 1], bit_off)
                members.append(Member(name, mtype, bit_off, bit_size))
            t.members = members
        return load

    def _old_bitfield(self, tid: int, bit_off: int) -> tuple[int, int]:
        """Without kind_flag a bitfield is an INT whose own bit size is narrower
        than its byte size (BTF before kernel 5.0's kind_flag encoding)."""
        src = self._owner(tid)
        if tid == 0 or src._record(tid)[1] != f.INT:
            return bit_off, 0
        p, _, _, _, _, sz = src._record(tid)
        enc = src._words[p + 3]
        nbits, shift = enc & 0xFF, (enc >> 16) & 0xFF
        if nbits == sz * 8 and not shift:
            return bit_off, 0
        return bit_off + shift, nbits

    def _enum_loader(self, p: int, k: int, vlen: int, signed: bool) -> Callable[[Type], None]:
        def load(t: Type) -> None:
            w = self._words
            out = []
            step = 2 if k == f.ENUM else 3
            bits = 32 if k == f.ENUM else 64
            for j in range(vlen):
                q = p + 3 + step * j
                value = w[q + 1] if k == f.ENUM else w[q + 1] | (w[q + 2] << 32)
                if signed and value >> (bits - 1):
                    value -= 1 << bits
                out.append((self.string(w[q]), value))
            t.enumerators = out
        return load

    # -- sizes and sanity --------------------------------------------------------------

    def raw_size(self, tid: int) -> int:
        """A type's size in bytes straight from the records (no Type built)."""
        total = 1
        for _ in range(_MAX_CHAIN):
            if tid == 0:
                return 0
            src = self._owner(tid)
            p, k, _, _, _, sz = src._record(tid)
            if k in (f.INT, f.STRUCT, f.UNION, f.ENUM, f.ENUM64, f.FLOAT):
                return total * sz
            if k == f.PTR:
                return total * self.ptr_size
            if k == f.ARRAY:
                total *= src._words[p + 5]
                tid = src._words[p + 3]
            elif k in (f.TYPEDEF, f.VOLATILE, f.CONST, f.RESTRICT, f.TYPE_TAG, f.VAR):
                tid = sz
            else:
                return 0
        raise FormatError(f"BTF type id {tid} refers to itself through a chain of types")

    def _check_chain(self, tid: int) -> None:
        """Refuse a cycle of pointers/typedefs/qualifiers/prototypes, which C cannot
        express but a corrupt blob can, before the model's recursion meets it."""
        if tid in self._acyclic:
            return
        on_path, done = {tid}, set()
        stack = [(tid, iter(self._refs(tid)))]
        while stack:
            cur, refs = stack[-1]
            nxt = next(refs, None)
            if nxt is None:
                stack.pop()
                on_path.discard(cur)
                done.add(cur)
            elif nxt and nxt not in self._acyclic and nxt not in done:
                if nxt in on_path or len(stack) > _MAX_CHAIN:
                    raise FormatError(f"BTF type id {tid} refers to itself through a chain of types")
                on_path.add(nxt)
                stack.append((nxt, iter(self._refs(nxt))))
        self._acyclic |= done

    def _refs(self, tid: int) -> list[int]:
        """Ids a type's C spelling depends on (struct/union/enum names end the walk)."""
        src = self._owner(tid)
        p, k, vlen, _, _, sz = src._record(tid)
        w = src._words
        if k in (f.PTR, f.TYPEDEF, f.VOLATILE, f.CONST, f.RESTRICT, f.TYPE_TAG, f.FUNC):
            return [sz]
        if k == f.ARRAY:
            return [w[p + 3]]
        if k == f.FUNC_PROTO:
            return [sz] + [w[p + 3 + 2 * j + 1] for j in range(vlen)]
        return []
