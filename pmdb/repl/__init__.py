"""The interactive prompt: loop (app), completion (suggest, completer), colours, keys."""
