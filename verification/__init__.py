"""The generative verification harness and the pre-cutover sign-off gate."""
