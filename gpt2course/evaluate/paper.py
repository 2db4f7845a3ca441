"""The GPT-2 paper's zero-shot figures (Radford et al., 2019, "Language Models are Unsupervised
Multitask Learners", Table 3), and what keeps them from being comparable with ``eval``'s.

The paper reports perplexity per *canonical unit* of each dataset (a word of its original
tokenization), not per GPT-2 token, after running each dataset through invertible
de-tokenizers that undo its pre-processing (spaces around punctuation, "@-@", "<unk>", ...)
and that are not published with the paper; it reports gains of 2.5 to 5 perplexity from them.
Its LAMBADA perplexity is of the last word of each passage given the rest, not of the text as
a stream. So ``eval`` prints the paper's figure as a landmark, with these caveats, not as a
number it should reproduce.
"""

from __future__ import annotations

# weights name -> the paper's model size; figures per dataset key, in that order of sizes
SIZES = {"gpt2": "117M", "gpt2-medium": "345M", "gpt2-large": "762M", "gpt2-xl": "1542M"}
TABLE_3 = {  # perplexity, zero-shot
    "wikitext-2": (29.41, 22.76, 19.93, 18.34),
    "ptb": (65.85, 47.33, 40.31, 35.76),
    "wikitext-103": (37.50, 26.37, 22.05, 17.48),
    "lambada": (35.13, 15.60, 10.87, 8.63),
}
CAVEAT = ("the paper divides by the dataset's words, not GPT-2 tokens, and first runs the text "
          "through invertible de-tokenizers it does not publish (worth 2.5-5 perplexity, it says)")
LAMBADA_CAVEAT = ("the paper's LAMBADA figure is the perplexity of each passage's LAST WORD given "
                  "the passage, not of the passages as one stream: not the same quantity")


def figure(weights: str | None, dataset: str) -> tuple[str, float] | None:
    """(model size, perplexity) from Table 3 for GPT-2 weights by name and a dataset key, or None."""
    size = SIZES.get(weights or "")
    row = TABLE_3.get(dataset)
    if size is None or row is None:
        return None
    return size, row[list(SIZES.values()).index(size)]
