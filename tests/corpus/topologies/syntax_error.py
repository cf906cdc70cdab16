"""Malformed on purpose: not valid Python."""

def build(:
    pass
