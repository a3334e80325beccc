"""File formats: each turns a file into a Dump (one native address space + notes)."""
