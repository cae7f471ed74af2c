"""Needle-in-a-haystack evaluation: prompt building, runs, scoring and plots."""
