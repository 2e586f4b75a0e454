"""Benchmarks, kept apart from the service (not in the worker's or the API's image): training
speed against the lab notebook's own `model.fit` (`training`, `notebook`), and the service under
load on a throw-away stack (`service`, `loadgen`). `labq bench` runs them."""
