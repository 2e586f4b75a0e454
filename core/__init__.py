"""Leaf package shared by the API, the worker and the CLI: settings, the spec, constants, the queue producer.

Nothing here imports another labq package, and nothing here imports TensorFlow.
"""
