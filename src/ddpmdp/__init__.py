"""ddpmdp: ELBO-optimal inference schedules for pretrained DDPMs."""
__version__ = "0.1.0"
