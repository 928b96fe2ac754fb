"""Runnable examples of the raft core."""
