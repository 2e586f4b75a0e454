"""The MNIST lab as labq's first body of work: its twelve sections as presets with the published
numbers (`presets`, `lab2_reference.json`) and the report that sets measured runs beside them
(`report`, read through the public HTTP API only). No TensorFlow, no worker: the API serves the
presets, the CLI writes the report."""
