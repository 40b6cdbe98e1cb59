"""The training engine: the trainer and its command (`trainer`, `train_cli`), negative sampling
(`sampling`), full-ranking evaluation (`metrics`), the optimiser (`optim`) and the device choice
(`device`). Imported by module, so `import guider.engine` stays light."""
