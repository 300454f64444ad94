"""Training blocks: the fit loop pieces (learning rate, compile, train step, distribution strategy,
checkpoints, observers, transfer learning) and the model loader. The run itself is
:mod:`edgecnn.pipelines.train`; the top-level ``training/`` folder holds the recipes (YAML) that use it."""
