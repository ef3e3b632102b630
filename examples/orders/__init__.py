"""The reference service: an order API on real HTTP dependencies, with fault knobs."""
