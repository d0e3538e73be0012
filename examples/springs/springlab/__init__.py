"""springlab: the worked example of "Your own model and data" (README): a model and a dataset of a lab's own."""
