"""Syntax colours for the prompt: a pygments lexer over pmdb's own tokenizer.

Reusing pmdb.language.lexer (tolerant mode) means the colours always agree with
what the parser will read, including where a line stops making sense (ERROR).
"""

from __future__ import annotations

from collections.abc import Iterator

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
