"""Tests of seawall.integrations."""
