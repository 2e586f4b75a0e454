"""Names shared by the producer (API) and the consumer (worker)."""

TRAIN_TASK = "labq.train"
QUEUE = "labq"

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
PRUNED = "pruned"  # a search trial its pruner stopped at an epoch end; history kept

STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, PRUNED)
FINISHED = (SUCCEEDED, FAILED, CANCELLED, PRUNED)

MNIST_TRAIN = 60_000
MNIST_TEST = 10_000
