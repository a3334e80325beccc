"""Syntax colours for the prompt: a pygments lexer over pmdb's own tokenizer.

Reusing pmdb.language.lexer (tolerant mode) means the colours always agree with
what the parser will read, including where a line stops making sense (ERROR).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pygments.lexer import Lexer
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


class MdbLexer(Lexer):
    """The mdb command language, as pmdb reads it."""

    name = "mdb"
    aliases = ["mdb", "pmdb"]
    filenames: list[str] = []

    def get_tokens_unprocessed(self, text: str) -> Iterator[tuple[int, _TokenType, str]]:
        try:
            tokens = L.tokenize(text, tolerant=True)
        except Exception:  # a lexer bug must never break typing: show the line uncoloured
            yield 0, Token.Text, text
            return
        end = 0
        for tok in tokens:
            if tok.start > end:    # tolerate gaps, so no character is ever lost from the display
                yield end, Token.Text, text[end:tok.start]
            yield tok.start, STYLE_OF.get(tok.kind, Token.Text), tok.text
            end = tok.end
        if end < len(text):
            yield end, Token.Text, text[end:]
