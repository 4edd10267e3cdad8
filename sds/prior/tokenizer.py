"""A word-level tokenizer for the prior's closed vocabulary.

Each vocabulary word is exactly one token (a BPE tokenizer with naive merges split caption words into
characters), and an unknown word becomes ``<|unk|>``, which the prompt processor reports to the user.
Saved with ``save_pretrained`` and loaded with ``AutoTokenizer.from_pretrained`` like CLIP's.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from sds.prior.world import COLORS, SHAPES

SPECIAL_TOKENS = ("<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>")
VIEW_WORDS = ("front", "side", "back", "overhead", "view")
ARTICLE_WORDS = ("a", "an", "the")
MAX_LENGTH = 16


def vocabulary() -> list[str]:
    """Every word the prior knows (specials first, then ',' and the caption words)."""
    return [*SPECIAL_TOKENS, ",", *ARTICLE_WORDS, *COLORS, *SHAPES, *VIEW_WORDS]


def build_tokenizer(max_length: int = MAX_LENGTH) -> PreTrainedTokenizerFast:
    vocab = {word: i for i, word in enumerate(vocabulary())}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="<|unk|>"))
    core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=bos, eos_token=eos, unk_token="<|unk|>", pad_token="<|pad|>",
        model_max_length=max_length,
    )
