"""rnnbench: tanh RNN vs LSTM vs GRU, as in Chung, Gulcehre, Cho & Bengio (2014).

Data flows one way through the package:

    config -> rnnbench.data (corpora, batches) -> rnnbench.cells / rnnbench.model
           -> rnnbench.train / rnnbench.stack (training) -> rnnbench.runs (run directory)
           -> rnnbench.report, rnnbench.figures (results tables and figures)
"""

__version__ = "0.1.0"

from . import schema as _schema  # noqa: E402,F401  (registers the config schema in Hydra's ConfigStore)
from . import search as _search  # noqa: E402,F401  (registers the config resolvers)
