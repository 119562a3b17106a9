"""The pieces ``genrefusion.train`` is built from: seeding, the run folder, the loss and schedule, the ULMFiT stage.

Their log lines go to the ``genrefusion.train`` logger, which the training command and ``train.log`` follow.
"""
