"""The job side of retraining: what a training job receives and reports (`contract`), and an example trainer
(`example_train`) that the tests and the demo run as a Ray Job. See docs/retraining.md."""
