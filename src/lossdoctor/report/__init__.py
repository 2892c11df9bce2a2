"""Rendering a Report: console (rich) and HTML (matplotlib). Rendering only ranks nothing and decides nothing."""
