import os
import warnings

import mxnet as mx
import numpy as np
import pytest

os.environ.setdefault("MXNET_ENFORCE_DETERMINISM", "1")
warnings.filterwarnings("ignore", category=UserWarning, module="mxnet")


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
    np.random.seed(0)
