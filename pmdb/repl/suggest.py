"""What kind of word the cursor is in: the pure half of completion.

``suggest(text, cursor)`` looks only at the characters before the cursor and
says which kind of name is expected there (a dcmd, a walker, a symbol, a type,
a member, an option, a file) and the part of it already typed. It knows no
target and no registry, so it is tested with plain tables of strings; the
completer maps each kind to candidates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("dcmd", "walker", "symbol", "type", "member", "option", "file", "cache", "foreach", "none")

# dcmds whose first argument is a type name and whose later arguments are members of it
TYPE_THEN_MEMBERS = frozenset({"print", "offsetof", "list", "struct", "ptype"})
# dcmds that take a type name and nothing else
TYPE_ONLY = frozenset({"sizeof"})
TYPE_KEYWORDS = ("struct", "union", "enum")
# dcmds whose first argument is a slab cache's name
CACHE_ARG = frozenset({"kmastat", "kmem_verify"})
# option -> what its value is: a cache name (``kmem -S cache``, ``::kmalog -c cache``)
CACHE_OPTION = {("kmem", "-S"), ("kmalog", "-c")}
# dcmds whose arguments are C expressions over globals, members reached with . and ->
EXPRESSION_ARGS = frozenset({"p", "print"})
_VAR_PATH = re.compile(r"^[*&(]*([A-Za-z_]\w*)((?:\[[^\]]*\])?(?:(?:\.|->)\w*(?:\[[^\]]*\])?)+)$")

_IDENT_TAIL = re.compile(r"[A-Za-z_][\w.]*(?:`[\w.]*)?$|[A-Za-z_][\w.]*`$")
_DCMD_NAME = re.compile(r"[\w$.\-]*")
_OPERATORS = set("+-*%&|^~#(,<[")


@dataclass(frozen=True)
class Suggestion:
    kind: str                    # one of KINDS
    prefix: str                  # what is already typed of the word (replaced by a completion)
    context: str = ""            # member: the type; option: the dcmd; symbol: a module
    path: tuple[str, ...] = ()   # member: the members before the last '.' or '->'
    variable: str = ""           # member: the global whose type the path starts from


NONE = Suggestion("none", "")


def suggest(text: str, cursor: int | None = None) -> Suggestion:
    """The kind of word expected at ``cursor`` in ``text`` (a command line)."""
    before = text if cursor is None else text[:cursor]
    mode, seg = _current_segment(before)
    if mode == "expr":
        return _in_expression(seg)
    if mode != "stage":
        return NONE
    return _in_stage(seg)


def _current_segment(before: str) -> tuple[str, str]:
    """('stage' | 'expr' | 'shell' | 'string', the text of the innermost part the cursor is in)."""
    start = 0
    quote = ""
    depth = 0                    # parentheses
    brackets: list[int] = []     # starts of open $[ ... ]
    i = 0
    while i < len(before):
        ch = before[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "$" and before[i + 1:i + 2] == "[":
            brackets.append(i + 2)
            i += 1
        elif ch == "]" and brackets:
            brackets.pop()
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "!" and not brackets and depth == 0 and before[i + 1:i + 2] != "=":
            return "shell", before[i + 1:]
        elif ch in ";|" and not brackets and depth == 0:
            start = i + 1
        i += 1
    if quote:
        return "string", ""
    if brackets:
        return "expr", before[brackets[-1]:]
    return "stage", before[start:]


def _in_expression(seg: str) -> Suggestion:
    """An expression: a symbol name is expected after an operator or as a partial word."""
    m = _IDENT_TAIL.search(seg)
    if m and (m.start() == 0 or not (seg[m.start() - 1].isalnum() or seg[m.start() - 1] == "_")):
        word = m.group(0)
        if "`" in word:
            module, _, name = word.partition("`")
            return Suggestion("symbol", name, context=module)
        return Suggestion("symbol", word)
    stripped = seg.rstrip()
    if stripped and stripped == seg and stripped[-1] in _OPERATORS:
        return Suggestion("symbol", "")
    return NONE


def _verb_start(seg: str) -> tuple[str, int]:
    """The verb of a stage ('::', '$', '/', '=', '>', or '') and where its text starts."""
    depth = 0
    quote = ""
    for i, ch in enumerate(seg):
        if quote:
            quote = "" if ch == quote else quote
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth:
            continue
        elif seg.startswith("::", i):
            return "::", i + 2
        elif ch == "$" and seg[i + 1:i + 2] != "[":
            return "$", i
        elif ch in "/?" or (ch == "=" and seg[i + 1:i + 2] != "=" and seg[i - 1:i] not in ("=", "!")):
            return "/", i + 1
        elif ch == ">" and seg[i + 1:i + 2] != ">" and seg[i - 1:i] not in (">", "-"):   # not "->"
            return ">", i + 1
    return "", len(seg)


def _in_stage(seg: str) -> Suggestion:
    verb, at = _verb_start(seg)
    if verb == "":
        crash = _crash_word(seg)
        if crash is not None:
            return crash
        return _in_expression(seg) if seg.strip() else NONE
    if verb in ("/", ">"):
        return NONE
    rest = seg[at:]
    if verb == "$":
        if rest.startswith("$<"):
            return Suggestion("file", rest[2:].lstrip("<").lstrip())
        name = _DCMD_NAME.match(rest, 1)
        end = name.end() if name else 1
        if end == len(rest):
            return Suggestion("dcmd", rest)
        return _arguments(rest[:end], rest[end:])
    name_m = _DCMD_NAME.match(rest)
    end = name_m.end() if name_m else 0
    if end == len(rest):
        return Suggestion("dcmd", rest)
    return _arguments(rest[:end], rest[end:])


def _crash_word(seg: str) -> Suggestion | None:
    """A crash command word starting the stage (``bt -``, ``kmem -S ``): its dcmd's arguments,
    as pmdb.language.crash_aliases rewrites the line before running it."""
    from pmdb.language.crash_aliases import CRASH_ALIASES, CRASH_COMMANDS

    m = re.match(r"\s*([A-Za-z_]\w*)(?=\s)", seg)
    if m is None or m.group(1) not in CRASH_COMMANDS:
        return None
    word = m.group(1)
    return _arguments(CRASH_ALIASES.get(word, word).split()[0], seg[m.end():])


def _arguments(dcmd: str, args: str) -> Suggestion:
    """The arguments of a dcmd: what its next word is depends on the dcmd and the words before."""
    if not args[:1].isspace():
        return NONE
    words = args.split()
    current = "" if args[-1:].isspace() else words.pop()
    if dcmd == "foreach":
        return _foreach(words, current, args)
    if current.startswith("-"):
        return Suggestion("option", current, context=dcmd)
    if words and (dcmd, words[-1]) in CACHE_OPTION:
        return Suggestion("cache", current)
    positional = [w for w in words if not w.startswith("-")]
    if dcmd in CACHE_ARG and not positional:
        return Suggestion("cache", current)
    if (dcmd == "p" or (dcmd in EXPRESSION_ARGS and not positional)
            or (dcmd in ("struct", "union") and "." in current and not positional)):
        member = _member_path(dcmd, current)
        if member is not None:
            return member
    if dcmd in ("walk",):
        return Suggestion("walker", current) if not positional else NONE
    if dcmd in ("help",):
        return Suggestion("dcmd", current.removeprefix("::")) if not positional else NONE
    if dcmd in TYPE_THEN_MEMBERS or dcmd in TYPE_ONLY:
        return _type_or_member(dcmd, positional, current, args)
    if current and (current[0].isalpha() or current[0] == "_"):
        return _in_expression(current)
    return NONE


def _foreach(words: list[str], current: str, args: str) -> Suggestion:
    """crash's ``foreach [tasks] command [args]``: task selectors and the command, then that
    command's own arguments."""
    from pmdb.language.crash_aliases import CRASH_ALIASES

    at = next((i for i, w in enumerate(words) if w in CRASH_ALIASES), None)
    if at is None:
        return Suggestion("foreach", current)
    command = words[at]
    after = args[args.find(command, sum(len(w) + 1 for w in words[:at])) + len(command):]
    return _arguments(CRASH_ALIASES[command].split()[0], after)


def _member_path(dcmd: str, current: str) -> Suggestion | None:
    """A member being typed in a path: ``init_task.co`` or ``init_task->mm->pg`` (a global's
    members, for p and ::print) and crash's ``struct task_struct.pid,co`` (a type's)."""
    if dcmd in ("struct", "union"):
        head, _, tail = current.partition(".")
        parts = re.split(r"\.|->", tail.rsplit(",", 1)[-1])
        return Suggestion("member", parts[-1], context=f"{dcmd} {head}",
                          path=tuple(_unindexed(p) for p in parts[:-1] if p))
    m = _VAR_PATH.match(current)
    if m is None:
        return None
    parts = re.split(r"\.|->", m.group(2))
    path = tuple(_unindexed(p) for p in parts[:-1] if _unindexed(p))
    return Suggestion("member", parts[-1], path=path, variable=m.group(1))


def _unindexed(step: str) -> str:
    """A path step without its ``[i]`` (members of an array's elements are the element's)."""
    return re.sub(r"\[[^\]]*\]", "", step)


def _type_or_member(dcmd: str, positional: list[str], current: str, args: str) -> Suggestion:
    if not positional:
        return Suggestion("type", current)
    if positional[0] in TYPE_KEYWORDS and len(positional) == 1:
        # "struct no": the whole spelling from the keyword on is the type being typed
        kw_at = args.rfind(positional[0])
        return Suggestion("type", args[kw_at:])
    if dcmd in TYPE_ONLY:
        return NONE
    n_type_words = 2 if positional[0] in TYPE_KEYWORDS else 1
    type_name = " ".join(positional[:n_type_words])
    parts = re.split(r"\.|->", current)
    return Suggestion("member", parts[-1], context=type_name,
                      path=tuple(_unindexed(p) for p in parts[:-1] if _unindexed(p)))
