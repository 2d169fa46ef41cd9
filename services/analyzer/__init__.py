"""Analyzer: transcribes recordings and scores them against the sales script."""
