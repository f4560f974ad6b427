"""A small project of its own that divsweep sweeps: a LightningModule, a LightningDataModule and
a grouped dataset it generates (README, "Your own model and data")."""
