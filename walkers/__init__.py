"""Built-in walkers, one module per subject; found by walking this package."""
