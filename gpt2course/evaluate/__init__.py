"""Evaluating the model the course runs: `eval` (perplexity on a dataset, beside the GPT-2
paper's figure and Hugging Face's own number) and `lens` (the logit lens)."""
