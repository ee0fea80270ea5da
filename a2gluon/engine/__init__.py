"""What turns a model plus data into results: devices, precision, training, evaluation."""
