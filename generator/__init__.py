"""LLM variations of annotated tasks: templates, the LLM client, and the RQ jobs that import them."""
