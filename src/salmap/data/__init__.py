"""Datasets: the cluttered digits benchmark (`salmap.data.digits`) and ImageNet folders
(`salmap.data.imagenet`)."""
