"""Malformed on purpose: an empty `topos` dict."""

topos = {}
