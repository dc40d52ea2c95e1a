"""A small corpus shipped with ldlm for the built-in default run (see README.md here)."""

from pathlib import Path

E2E_REFS = Path(__file__).with_name("e2e_refs.txt")
E2E_HELDOUT = Path(__file__).with_name("e2e_heldout.txt")  # 1,000 refs of the held-out slice
