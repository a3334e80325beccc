"""Syntax colours for the prompt: pmdb's own tokenizer, its tokens named as pygments names them.

Reusing pmdb.language.lexer (tolerant mode) means the colours always agree with
what the parser will read, including where a line stops making sense (ERROR). The
prompt's lexer (PromptLexer) is a prompt_toolkit one: only pygments' token names are
imported at start, not its lexer machinery (~10 ms of imports); MdbLexer, the same
colours as a pygments lexer, is made when something asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.lexers import Lexer as _PromptToolkitLexer
from pygments.token import Token, _TokenType

from pmdb.language import lexer as L

STYLE_OF: dict[str, _TokenType] = {
    L.NUMBER: Token.Number,
    L.SYMBOL: Token.Name.Variable,
    L.DOT: Token.Name.Builtin,
    L.VAR: Token.Name.Variable.Instance,
    L.OPERATOR: Token.Operator,
    L.LPAREN: Token.Punctuation,
    L.RPAREN: Token.Punctuation,
    L.COMMA: Token.Punctuation,
    L.DCMD: Token.Keyword,
    L.DOLLAR: Token.Keyword,
    L.FORMAT: Token.Name.Function,
    L.ASSIGN: Token.Name.Variable.Instance,
    L.WORD: Token.Name.Attribute,
    L.STRING: Token.String,
    L.IMMEDIATE: Token.Punctuation,
    L.RBRACKET: Token.Punctuation,
    L.PIPE: Token.Operator.Word,
    L.SEMI: Token.Punctuation,
    L.SHELL: Token.String.Backtick,
    L.COMMENT: Token.Comment,
    L.WHITESPACE: Token.Text.Whitespace,
    L.ERROR: Token.Error,
}


# Colours by the terminal's own palette (ANSI names) and attributes, so every word stays
# readable on dark and light backgrounds alike: words and symbols in the default foreground,
# no fixed RGB (pygments' default style drew symbols navy, unreadable on black).
THEME: dict[_TokenType, str] = {
    Token.Keyword: "bold ansimagenta",            # ::dcmd, $c
    Token.Name.Function: "ansigreen",             # /fmt
    Token.Name.Variable.Instance: "ansigreen",    # <var, >var
    Token.Number: "ansicyan",
    Token.String: "ansigreen",
    Token.String.Backtick: "italic",              # ! shell text
    Token.Operator.Word: "bold",                  # |
    Token.Comment: "italic",
    Token.Error: "ansired underline",
    Token.Name.Variable: "",
    Token.Name.Builtin: "bold",                   # .
    Token.Name.Attribute: "",
    Token.Operator: "",
    Token.Punctuation: "",
}


def prompt_style() -> Any:
    """The prompt's colours (a prompt_toolkit Style) from THEME."""
    from prompt_toolkit.styles import style_from_pygments_dict

    return style_from_pygments_dict(THEME)


def tokens(text: str) -> Iterator[tuple[int, _TokenType, str]]:
    """(start, pygments token type, text) of every piece of a line, no character lost."""
    try:
        found = L.tokenize(text, tolerant=True)
    except Exception:  # a lexer bug must never break typing: show the line uncoloured
        yield 0, Token.Text, text
        return
    end = 0
    for tok in found:
        if tok.start > end:    # tolerate gaps, so no character is ever lost from the display
            yield end, Token.Text, text[end:tok.start]
        yield tok.start, STYLE_OF.get(tok.kind, Token.Text), tok.text
        end = tok.end
    if end < len(text):
        yield end, Token.Text, text[end:]


def _style_class(token: _TokenType) -> str:
    """The class prompt_toolkit gives a pygments token (style_from_pygments_dict's names)."""
    return "class:" + ".".join(("pygments", *token)).lower()


class PromptLexer(_PromptToolkitLexer):
    """The prompt's colours: each line's tokens as prompt_toolkit fragments."""

    def lex_document(self, document: Document) -> Any:
        lines = document.lines

        def line(i: int) -> StyleAndTextTuples:
            if not 0 <= i < len(lines):
                return []
            return [(_style_class(kind), piece) for _, kind, piece in tokens(lines[i])]

        return line


def __getattr__(name: str) -> Any:
    """MdbLexer, the pygments lexer, defined on first use (pygments.lexer costs ~10 ms)."""
    if name != "MdbLexer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from pygments.lexer import Lexer

    class MdbLexer(Lexer):
        """The mdb command language, as pmdb reads it."""

        name = "mdb"
        aliases = ["mdb", "pmdb"]
        filenames: list[str] = []

        def get_tokens_unprocessed(self, text: str) -> Iterator[tuple[int, _TokenType, str]]:
            return tokens(text)

    globals()["MdbLexer"] = MdbLexer
    return MdbLexer
