"""Step 01: the model configuration.

GPT-2 small is fully described by a handful of numbers. Every later step reads
its sizes from this one object, so getting them right here matters everywhere.
"""

from dataclasses import dataclass


# ANCHOR: config
@dataclass
class GPT2Config:
    """The hyperparameters of GPT-2 small (124M parameters)."""

    # TODO 1: Declare the int field `vocab_size` with its default: how many
    # different tokens GPT-2 knows.
    # Hint: GPT-2's BPE has 50,000 merges + 256 byte tokens + 1 <|endoftext|>.
    #>>> TODO 1
    raise NotImplementedError("step 01, TODO 1")
    #<<< TODO 1
    # TODO 2: Declare the int field `n_positions` with its default: the longest
    # sequence the model can read (its context length).
    # Hint: a power of two, 1K.
    #>>> TODO 2
    raise NotImplementedError("step 01, TODO 2")
    #<<< TODO 2
    # TODO 3: Declare the int fields `n_embd` (the width of every hidden vector),
    # `n_layer` (the number of transformer blocks) and `n_head` (attention heads
    # per block), with GPT-2 small's values as defaults.
    # Hint: read them off `transformers.GPT2Config()`; each head is 64 wide.
    #>>> TODO 3
    raise NotImplementedError("step 01, TODO 3")
    #<<< TODO 3
    # TODO 4: Declare `n_inner` (int or None; None means 4 * n_embd) and the float
    # `layer_norm_epsilon`, the small number that keeps LayerNorm from dividing by zero.
    # Hint: Hugging Face leaves n_inner unset; its epsilon is a small power of ten.
    #>>> TODO 4
    raise NotImplementedError("step 01, TODO 4")
    #<<< TODO 4

    @property
    def head_dim(self) -> int:
        """The width of one attention head: n_embd split across n_head."""
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        """The MLP's hidden width: n_inner, or 4 * n_embd when it is unset."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd
# ANCHOR_END: config
