"""Trained weights -> a TFLite step model with explicit state, measured and packed into a bundle.

reference  the LSTM step in numpy (yardstick, calibration rollouts)
stepmodel  the one-step tf.function and its TFLite variants (fp32, fp16, dynamic, int8, Edge TPU input)
calibrate  representative (token, state) pairs for int8
fidelity   latency, test NLL and agreement, measured through player.runtime
edgetpu    the Edge TPU op table and compiler
build      all of it, in order; __main__ is the cadenza-convert command
"""
