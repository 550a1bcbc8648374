"""The training CLIs' parts (``pipelines/train.py``, ``train_context.py``, ``train_encoder.py`` and
``train_decoder.py`` are the CLIs).

* :mod:`pipelines.trainer.runtime`: atomic saves, fp32 state dicts, stopping on SIGTERM / Ctrl-C.
* :mod:`pipelines.trainer.start`: the model, loss and optimisers of a run, fresh, from weights or
  resumed from a checkpoint.
* :mod:`pipelines.trainer.persist`: a run's checkpoint and its exported weights and sidecar.
* :mod:`pipelines.trainer.validation`: the fixed validation crops and their estimated bpp / PSNR.
* :mod:`pipelines.trainer.finetune`: fine-tuning one side of trained weights with the rest frozen
  (options, checked saves, the loop).
"""
