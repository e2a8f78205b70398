import numpy as np

from alvar.entropy import confidence_score, entropy


def test_entropy_bounds_and_order() -> None:
    probabilities = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    values = entropy(probabilities)
    assert values[0] == 0.0
    np.testing.assert_allclose(values[1], np.log(2))
    np.testing.assert_allclose(values[2], np.log(3))
    np.testing.assert_allclose(confidence_score(probabilities), [1.0, 0.5, 1 / 3], atol=1e-12)
    assert np.all(np.diff(values) > 0)
