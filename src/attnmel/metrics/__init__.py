"""Metrics as plain functions of labels, probabilities and masks (numpy, scikit-learn, scipy).

The lowest layer of attnmel after ``errors``: training validation and evaluation both score here,
so neither has to import the other.
"""
