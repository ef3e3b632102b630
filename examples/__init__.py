"""Examples that are tested like product code; `examples.orders` is the reference service."""
