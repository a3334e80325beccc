"""Built-in dcmds, one module per subject; found by walking this package."""
