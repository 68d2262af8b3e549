"""revisit_bn: the package behind the companion book to Lian & Liu (2019), "Revisit Batch Normalization".

Modules (data flows one way: data -> models -> train -> results -> plots):

- :mod:`revisit_bn.data`: MNIST as in-memory tensors, batch orders (shuffled, label-sorted).
- :mod:`revisit_bn.layers`: Full Normalization (``FullNorm1d``, ``FullNorm2d``) trained by MCSGD.
- :mod:`revisit_bn.models`: the "simple network" of the paper's experiments with a norm factory.
- :mod:`revisit_bn.train`: one training loop for every experiment, with a results cache.
- :mod:`revisit_bn.results`: atomic JSON results keyed by their parameters.
- :mod:`revisit_bn.claims`: the paper's claims checked against our measurements (verdicts).
- :mod:`revisit_bn.plots`: seaborn figures.
"""

__version__ = "0.1.0"
