"""Key bindings added to prompt_toolkit's emacs defaults.

The defaults already give ^C (abandon the line), ^D (quit on an empty line),
^R (history search), M-. (last word of the previous line) and Tab (complete).
"""

from __future__ import annotations

from prompt_toolkit.filters import has_completions
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent


def key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("c-space")
    def _complete(event: KeyPressEvent) -> None:
        """Open the completion menu without inserting anything (Tab inserts a common prefix)."""
        event.current_buffer.start_completion(select_first=False)

    @kb.add("escape", filter=has_completions, eager=True)
    def _close_menu(event: KeyPressEvent) -> None:
        """Escape closes the menu and keeps the text as typed."""
        event.current_buffer.cancel_completion()

    @kb.add("c-l")
    def _clear(event: KeyPressEvent) -> None:
        event.app.renderer.clear()

    return kb
