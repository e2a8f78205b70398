"""The loop without people, on files: simulations of the selection strategies, evaluations of models trained on
a dataset (transfer), and the public data sets they run on."""
