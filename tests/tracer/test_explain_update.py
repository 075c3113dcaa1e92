"""``explain`` writes the optimizer's arithmetic with the step's numbers, as the page does."""
import tracer

from _trace_factories import s2_trace


def test_rmsprop_first_step_shows_velocity_denominator_and_the_lr_over_sqrt_rule():
    """S2: RMSprop's first step is lr/sqrt(1 - rho) = 0.158114 in size whatever the gradient."""
    text = tracer.explain(s2_trace(epochs=1, batch_size=12, shuffle=False), step=1)
    assert "Update: Keras RMSprop(lr=0.05, rho=0.9," in text and "0.0500000" not in text
    assert "    velocity \u2190 rho\u00b7velocity + (1 \u2212 rho)\u00b7g\u00b2" in text
    assert "    p \u2190 p \u2212 increment" in text and "p = -increment + p" not in text
    lines = [ln.strip() for ln in text.splitlines()]
    assert "dense/kernel, with this step's numbers:" in lines
    k = lines.index("dense/kernel, with this step's numbers:")
    velocity, denominator, increment, p = lines[k + 1:k + 5]
    assert velocity.startswith("velocity \u2190 0.9\u00b70 + (1 \u2212 0.9)\u00b7(-")
    assert denominator.startswith("denominator \u2190 1e-7 + ")
    assert increment.startswith("increment \u2190 0.05\u00b7(-") and increment.endswith("= -0.1581139")
    assert p == "p \u2190 0.5 \u2212 (-0.158114) = 0.6581139"
