"""Reports: metrics.json → tables, and the figures that go with them."""
