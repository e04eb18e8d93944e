"""The library: adopting what is on disk, auditing and healing it (docs/interface.md §8)."""
