"""Label Studio as alvar sees it: the client, label configs, task data, webhook events and training-data rules."""
