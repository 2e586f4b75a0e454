"""Names shared by the producer (API) and the consumer (worker)."""

TRAIN_TASK = "labq.train"
QUEUE = "labq"

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)

MNIST_TRAIN = 60_000
MNIST_TEST = 10_000
