"""Collector formats: each turns its documents into `WindowsEvent`s or install signals."""
