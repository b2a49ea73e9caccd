"""river estimators: RNN forecaster, regressor and classifier for ``learn_one`` loops.

They follow river's protocols (``check_estimator`` passes) and run the same exact
TBPTT(k1, k2) as :class:`~streamrnn.OnlineLearner`, on a compiled engine for one stream.
"""

from .estimators import RNNClassifier, RNNForecaster, RNNRegressor

__all__ = ["RNNClassifier", "RNNForecaster", "RNNRegressor"]
