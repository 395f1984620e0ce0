"""Write a tiny random-weight Llama that vLLM can serve, built locally: no model hub.

Run it with the engine's python (torch, transformers and tokenizers live there):

    /path/to/engine/bin/python tests/inference/tiny_model.py OUTDIR [HIDDEN LAYERS]

(HIDDEN and LAYERS make a larger random model of the same shape for the benchmark, whose
tokens then cost what a small real model's do; the tests use the defaults.)

It writes config.json, generation_config.json, model.safetensors, tokenizer.json,
tokenizer_config.json (with a chat template) and special_tokens_map.json, deterministically
(fixed seed, fixed corpus), in a few seconds and under 1 MB. The head dimension is 32
(64 hidden / 2 heads): vLLM's CPU attention kernel only takes 32, 64, 80, 96, 112, 128 and up.
It imports nothing from the project.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
ROLES = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL = [UNK, BOS, EOS, PAD, *ROLES]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
VOCAB = 2000
CONTEXT = 512
WORDS = (
    "the a an box gateway model engine request answer token budget key project user team "
    "department cost price route cache stream chat completion local private server client "
    "hello world quick brown fox jumps over lazy dog one two three four five six seven eight "
    "nine ten is are was were be been has have had do does did can could will would should "
    "may might must and or but if then else when while for with without from into onto about "
    "above below under between through during before after again further once here there why "
    "how all any both each few more most other some such only own same so than too very"
)


def corpus(seed: int = 7, lines: int = 4000) -> list[str]:
    """Deterministic sentences, with digits and punctuation, to train the tokenizer on."""
    rng = random.Random(seed)
    words = WORDS.split()
    out = []
    for i in range(lines):
        line = [rng.choice(words) for _ in range(rng.randint(4, 16))]
        out.append(f"{' '.join(line).capitalize()} {i}{rng.choice('.!?,;:')}")
    return out


def write_tokenizer(out: Path) -> int:
    """A byte-level BPE tokenizer trained on the corpus; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "pad_token": PAD}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": CONTEXT,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
        "additional_special_tokens": list(ROLES),
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return int(tok.get_vocab_size())


def write_model(out: Path, vocab: int, hidden: int = 64, layers: int = 2) -> None:
    """A two-layer Llama with random weights (seed 0), in bfloat16 safetensors."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 32,  # a head dimension of 32, which vLLM's CPU kernel takes
        num_key_value_heads=hidden // 32,
        max_position_embeddings=CONTEXT,
        tie_word_embeddings=True,
        bos_token_id=SPECIAL.index(BOS),
        eos_token_id=SPECIAL.index(EOS),
        pad_token_id=SPECIAL.index(PAD),
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    ).save_pretrained(out)


def main(argv: list[str]) -> int:
    """Write the model into the folder named on the command line."""
    if len(argv) not in (1, 3):
        print("usage: tiny_model.py OUTDIR [HIDDEN LAYERS]", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    size = (int(argv[1]), int(argv[2])) if len(argv) == 3 else (64, 2)
    write_model(out, write_tokenizer(out), *size)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
