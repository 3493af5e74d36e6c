"""Models of arch/ code."""
