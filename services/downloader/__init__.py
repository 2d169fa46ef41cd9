"""Downloader: streams call recordings into GridFS and probes them (issue: downloader)."""
