"""The mdb language: lexer -> parser (AST, never reads memory) -> evaluator."""
