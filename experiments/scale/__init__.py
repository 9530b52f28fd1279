"""``make bench-scale``: how divrec's cost grows with the shop (see README.md)."""
