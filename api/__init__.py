"""The FastAPI service. It never imports `worker` or TensorFlow: it enqueues by task name."""
