"""Leaf helpers of the AICL reproduction (numpy and the standard library only; nothing from the top level)."""
