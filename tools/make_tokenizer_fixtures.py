#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Trains small byte-level BPE tokenizers with Hugging Face `tokenizers` and writes, per tokenizer, the file and the
library's own encodings and decodings of held-out text to tests/fixtures/tokenizer/<name>/:

    tokenizer.json   the trained tokenizer, post-edited into the layout of the model family it imitates
    cases.txt        one JSON object per line: {"text": str, "ids": [...]} plus "ids_no_special": [...] when
                     encode(text, add_special_tokens=False) differs from "ids" (the template adds tokens)
    decode.txt       one JSON object per line: {"ids": [...], "hex": bytes, "hex_skip": bytes, "text": str,
                     "text_skip": str}: "hex"/"hex_skip" are the ByteLevel decoder's bytes before UTF-8 repair
                     (computed here from the id -> token strings and the GPT-2 byte table), "text"/"text_skip"
                     are the library's decode(ids, skip_special_tokens=False/True), which repairs invalid UTF-8
                     with U+FFFD
    splits.txt       (one file for all) the library's ids for Split / Digits variants, see write_splits
    long.json        the library's ids for two 100 kB lines without spaces that the C++ test regenerates from
                     the same LCG (count, FNV-1a 64 of the ids as little-endian u32, the first 16 ids)

The tokenizers (vocab 1500; merges in both JSON formats):
    gpt2     ByteLevel pre-tokenizer (GPT-2 regex, no prefix space), ByteLevel post-processor and decoder,
             <|endoftext|> special and inside the model vocab (id 0), merges as legacy "a b" strings
    llama3   Split(Llama 3 regex, Isolated) + ByteLevel(use_regex=false), ignore_merges=true, whole-word vocab
             entries added after training without merges (8 of a list of 24 were new; with ignore_merges such a
             word is one id: 12 held-out lines change without the flag), 11 special tokens after the vocab,
             post-processor Sequence[ByteLevel, TemplateProcessing("<|begin_of_text|> $A")]
    qwen2    NFC normalizer, Split(Qwen2 regex) + ByteLevel(use_regex=false), <|endoftext|> <|im_start|>
             <|im_end|> special and <tool_call> </tool_call> non-special added tokens, no template
    options  the gpt2 model behind rarely used options: a Sequence of Split (Regex, MergedWithNext), Split
             (String "::", Removed), Split (Regex \\s+, MergedWithPrevious, invert), Digits(individual) and
             ByteLevel(add_prefix_space=true); added tokens with lstrip, rstrip, single_word and normalized
             (two-pass matching); unk_token with fuse_unk (byte 0x7F has no vocab entry); a
             "[BOS] $A [EOS]" template
Training text: the even-indexed stdlib modules /usr/lib/python3.11/*.py by sorted name (the first 40) plus the
multilingual sample below. Held-out text: lines and multi-line blocks of the odd-indexed modules, generated
mixed-script lines, random code points of every plane, whitespace and digit edge cases, lines with each
tokenizer's added tokens. For qwen2 each line that its NFC normalizer changes is replaced by the normalizer's
output (the C++ tokenizer encodes NFC text unchanged, see llm/tokenizer.hpp).

It also writes the seeds of the fuzz target tests/fuzz/fuzz_tokenizer.cpp to tests/fuzz/corpus_tokenizer/: the
four layouts trained to 266 tokens and a merge-free file of the 256 byte chars (compact JSON, < 4096 bytes each).

Run from any directory (a few seconds; deterministic: reruns write identical files):

    .venv-llm/bin/python tools/make_tokenizer_fixtures.py
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"  # one training thread: the merge order must not depend on scheduling
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import json  # noqa: E402
import random  # noqa: E402
from pathlib import Path  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,  # noqa: E402
                        pre_tokenizers as pt, processors, trainers)

assert tokenizers.__version__ == "0.22.2", tokenizers.__version__

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tokenizer"
FUZZ = Path(__file__).resolve().parent.parent / "tests" / "fuzz" / "corpus_tokenizer"
STDLIB = Path("/usr/lib/python3.11")
VOCAB = 1500
SEED_VOCAB = 266  # fuzz seeds: under 4096 bytes, the smoke runs' -max_len

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")

MULTILINGUAL = """\
The quick brown fox jumps over the lazy dog. It's 2024; we'll see what they've done, isn't it?
Don't stop: "quotes", (parentheses), [brackets], {braces}, <angles> & ampersands; 3.14159 and 2,718,281.
Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. Grüße aus München, schön und süß!
Falsches Üben von Xylophonmusik quält jeden größeren Zwerg. Äpfel, Öl, Übermut — straße, maß, fuß.
Portez ce vieux whisky au juge blond qui fume. À bientôt, garçon ! Où est l'hôtel ? Noël, naïve, cœur, déjà.
L'été dernier, j'ai mangé des crêpes à Besançon ; c'était très agréable, n'est-ce pas ?
Съешь же ещё этих мягких французских булок, да выпей чаю. Привет, мир! Москва — столица России.
Широкая электрификация южных губерний даст мощный толчок подъёму сельского хозяйства.
Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Γειά σου Κόσμε! Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.
我能吞下玻璃而不伤身体。你好，世界！今天天气很好，我们去公园散步吧。机器学习和自然语言处理。
中华人民共和国成立于一九四九年。北京是中国的首都，上海是最大的城市。
いろはにほへと ちりぬるを わかよたれそ つねならむ。こんにちは世界！東京は日本の首都です。カタカナとひらがな。
私はガラスを食べられます。それは私を傷つけません。ラーメンとすしが好きです。
다람쥐 헌 쳇바퀴에 타고파. 안녕하세요 세계! 서울은 한국의 수도입니다. 한글은 과학적인 문자입니다.
صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت. مرحبا بالعالم! القاهرة هي عاصمة مصر. ١٢٣٤٥٦٧٨٩٠
ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम। नमस्ते दुनिया!
हिन्दी भारत की राजभाषा है। १२३४५ संख्याएँ।
Emoji: 😀 😃 😄 👍🏽 👨‍👩‍👧‍👦 🇩🇪 🇯🇵 ❤️ 🔥🔥🔥 ✨ 🚀 🤖 🧠 ☕️
Combining marks: e\u0301 a\u0300 o\u0308 n\u0303 Z\u0335\u0321a\u0336\u0322l\u0337g\u0338o\u0334 \u1100\u1161\u11a8 \u0915\u094d\u0937
Digits: 0123456789 12345678901234567890 3141592653589793238462643383279 0x7fffffff 1e-12 1_000_000 ½ ² ³ ⅓ Ⅻ
Whitespace:\ttab\t\tdouble tab   three spaces\u00a0nbsp\u2003em space\u3000ideographic space\u2028line sep
Mixed: naïve café résumé façade jalapeño piñata smörgåsbord Ærøskøbing Łódź İstanbul ǅemal ﬁnance
"""


def lcg_text(n_bytes, alphabet):
    """n_bytes of pseudo-random letters from `alphabet` (the C++ test builds the same string)."""
    x, out, size = 12345, [], 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31
        c = alphabet[(x >> 16) % len(alphabet)]
        b = len(c.encode())
        if size + b > n_bytes:
            return "".join(out)
        out.append(c)
        size += b


LONG_ASCII = "abcdefghijklmnopqrstuvwxyz"
LONG_MIXED = "aeiouxyzéüßжщяλπ中文字日本語한국ا"  # letters only: one pre-token under every regex here


def stdlib_files():
    files = sorted(STDLIB.glob("*.py"))
    return files[0::2][:40], files[1::2]


def read_lines(path):
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def training_text():
    train, _ = stdlib_files()
    for f in train:
        yield from read_lines(f)
    for _ in range(8):
        yield from MULTILINGUAL.splitlines()


def heldout_lines(rng):
    _, test = stdlib_files()
    lines = []
    # single lines of held-out modules: every 7th line of each module, at most 20 per module, 700 in all
    for f in test:
        got = read_lines(f)[3::7][:20]
        lines.extend(got)
        if len(lines) >= 700:
            break
    lines = lines[:700]
    # multi-line blocks (newline handling of the regexes), some with CRLF
    for f in test[:60]:
        src = read_lines(f)
        if len(src) < 40:
            continue
        start = rng.randrange(0, len(src) - 8)
        block = src[start:start + rng.randrange(2, 7)]
        lines.append(("\r\n" if rng.random() < 0.2 else "\n").join(block) + ("\n" if rng.random() < 0.5 else ""))
    # mixed-script lines from the sample's words, shuffled with odd separators
    words = [w for line in MULTILINGUAL.splitlines() for w in line.split()]
    seps = [" ", "  ", "\t", ", ", "-", "'s ", "\n", " \n ", "", "123", " 4567 ", "\u00a0", "\u3000", "!!", "'LL "]
    for _ in range(250):
        k = rng.randrange(1, 12)
        parts = []
        for _ in range(k):
            parts.append(rng.choice(words))
            parts.append(rng.choice(seps))
        lines.append("".join(parts))
    # random code points of every plane (no surrogates), with some spaces
    ranges = [(0x20, 0x7E), (0x00, 0x1F), (0x80, 0x2FF), (0x300, 0x36F), (0x370, 0x1FFF), (0x2000, 0x206F),
              (0x2070, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x1FFFF), (0x1F300, 0x1FAFF), (0x20000, 0x3FFFF),
              (0x40000, 0x10FFFF)]
    for _ in range(150):
        n = rng.randrange(1, 25)
        s = []
        for _ in range(n):
            lo, hi = rng.choice(ranges)
            s.append(chr(rng.randint(lo, hi)))
            if rng.random() < 0.15:
                s.append(" ")
        lines.append("".join(s))
    # edge cases
    lines += ["", " ", "  ", "\n", "\n\n", "\r\n", "\t", " \t \n ", "a", "  leading", "trailing  ", "  both  ",
              "x  \n\n  y!!", "I'LL pay 12345 for x  \n\n  y!!", "don't can't WON'T it'S", "'s'S'ſ", "1234567890" * 8,
              "٣٤٥ ½² ⅷ", "a \u00a0b", "a\u0085b\u2028c\u2029d", "e\u0301\u0301", "👨‍👩‍👧‍👦👍🏽",
              "\u0000nul\u0000", "\x7f\x7f del", "::a::b::", "a,b;c, d ;e", "Hello Hello! sayHello Hello_x",
              "    def f(x):\n        return x  # comment\n", "<|endoftext|", "|>", "<<|>>", "\u200d\u200c"]
    lines += [MULTILINGUAL, "\n".join(MULTILINGUAL.splitlines()[:3])]
    return lines


def special_lines(tokens):
    a, b = tokens[0], tokens[-1]
    return [a, a + a, a + b + a, " " + a + " ", "  " + a + "  ", "x" + a + "y", a + "Hello" + b, "Hello " + a + " world",
            a + "\n" + b + "\n", a[:-1], a + a[:-1], "".join(tokens), " ".join(tokens), a + " " * 3 + "text" + b]


def train(pre_tokenizer, special_tokens, normalizer=None, vocab_size=VOCAB):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=special_tokens,
                                  initial_alphabet=pt.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_text(), trainer)
    return json.loads(tok.to_str())


def added(i, content, special=True, normalized=None, lstrip=False, rstrip=False, single_word=False):
    return {"id": i, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}


def byte_level_pre(use_regex, add_prefix_space=False):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def split_re(pattern, behavior="Isolated", invert=False):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": behavior, "invert": invert}


BYTE_LEVEL_POST = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}


def template(single_tokens_before, single_tokens_after, ids):
    single = [{"SpecialToken": {"id": t, "type_id": 0}} for t in single_tokens_before]
    single.append({"Sequence": {"id": "A", "type_id": 0}})
    single += [{"SpecialToken": {"id": t, "type_id": 0}} for t in single_tokens_after]
    pair = single + [{"Sequence": {"id": "B", "type_id": 1}}]
    specials = {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in single_tokens_before + single_tokens_after}
    return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}


def make_gpt2(vocab_size=VOCAB):
    j = train(pt.ByteLevel(add_prefix_space=False, use_regex=True), ["<|endoftext|>"], vocab_size=vocab_size)
    j["post_processor"] = BYTE_LEVEL_POST
    j["model"]["merges"] = [a + " " + b for a, b in j["model"]["merges"]]  # legacy format
    return j, ["<|endoftext|>"]


def make_llama3(vocab_size=VOCAB, n_extra=24, n_special=11):
    j = train(pt.Sequence([pt.Split(Regex(LLAMA3_RE), "isolated", invert=False),
                           pt.ByteLevel(add_prefix_space=False, use_regex=False)]), [], vocab_size=vocab_size)
    m = j["model"]
    m["ignore_merges"] = True
    # whole words of the held-out text as extra vocab entries without merges (tiktoken vocabularies hold many):
    # with ignore_merges such a pre-token is one id, without it the merges split it
    byte_map = bytes_to_unicode()
    extra = ["Ġdefault", "Ġreturn", "Ġself", "Ġimport", "Ġexcept", "Ġraise", "Ġfunction", "Ġvalue", "Ġstring",
             "Ġobject", "ĠNone", "Ġlambda", "Ġisinstance", "Ġmodule", "Ġresult", "Ġbuffer", "Ġformat", "ĠHello",
             "Ġworld", "ĠMünchen", "Ġgroßen", "ĠПривет", "Ġ世界", "Ġnaïve"][:n_extra]
    n = len(m["vocab"])
    for w in extra:
        w = "".join(byte_map[b] for b in w.replace("Ġ", " ").encode())
        if w not in m["vocab"]:
            m["vocab"][w] = n
            n += 1
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"][:n_special]
    j["added_tokens"] = [added(n + i, t) for i, t in enumerate(specials)]
    ids = {t: n + i for i, t in enumerate(specials)}
    j["post_processor"] = {"type": "Sequence", "processors": [
        BYTE_LEVEL_POST, template(["<|begin_of_text|>"], [], ids)]}
    return j, specials


def make_qwen2(vocab_size=VOCAB):
    j = train(pt.Sequence([pt.Split(Regex(QWEN2_RE), "isolated", invert=False),
                           pt.ByteLevel(add_prefix_space=False, use_regex=False)]), [], normalizers.NFC(), vocab_size)
    n = len(j["model"]["vocab"])
    j["added_tokens"] = [added(n, "<|endoftext|>"), added(n + 1, "<|im_start|>"), added(n + 2, "<|im_end|>"),
                         added(n + 3, "<tool_call>", special=False, normalized=False),
                         added(n + 4, "</tool_call>", special=False, normalized=False)]
    j["post_processor"] = BYTE_LEVEL_POST
    return j, ["<|endoftext|>", "<|im_start|>", "<tool_call>", "</tool_call>", "<|im_end|>"]


def make_options(gpt2):
    j = json.loads(json.dumps(gpt2))
    m = j["model"]
    m["merges"] = [p.split(" ") for p in m["merges"]]  # pairs format
    del_char = bytes_to_unicode()[0x7F]
    assert not any(del_char in a or del_char in b for a, b in m["merges"])
    m["vocab"]["<unk>"] = m["vocab"].pop(del_char)  # byte 0x7F now has no entry: it becomes <unk>
    m["unk_token"] = "<unk>"
    m["fuse_unk"] = True
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        split_re("[,;]", "MergedWithNext"),
        {"type": "Split", "pattern": {"String": "::"}, "behavior": "Removed", "invert": False},
        split_re(r"\s+", "MergedWithPrevious", invert=True),
        {"type": "Digits", "individual_digits": True},
        byte_level_pre(True, add_prefix_space=True)]}
    n = len(m["vocab"])
    j["added_tokens"] = [
        added(0, "<|endoftext|>"), added(n, "[BOS]"), added(n + 1, "[EOS]"), added(n + 2, "<mask>", lstrip=True),
        added(n + 3, "[R]", rstrip=True), added(n + 4, "Hello", special=False, single_word=True),
        added(n + 5, "<ma", special=False, normalized=True), added(n + 6, "sk>x", special=False, normalized=True),
        added(n + 7, " [B]", special=False, normalized=False, lstrip=True, rstrip=True)]
    j["post_processor"] = template(["[BOS]"], ["[EOS]"], {"[BOS]": n, "[EOS]": n + 1})
    extra = ["a <mask> b", "x<mask>", "  <mask>  ", "<mask><mask>", "[R]   y", "[R]\n\nz", "Hello world", "sayHello",
             "Hello!", "Hello_x Hello", "éHello", "HelloHello", "<mak <mask> <ma", "<mask>x", "q sk>x", "a [B]  b",
             "  [B]  [B]  ", "::x::y", "1,2;3", "a\x7f\x7fb\x7f", "\x7f"]
    return j, ["[BOS]", "<mask>", "[R]", "Hello", "[EOS]"], extra


def bytes_to_unicode():
    """GPT-2's byte -> char table, written out independently of the library."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + n)
            n += 1
    return table


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for byte in int(i).to_bytes(4, "little"):
            h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def write(name, j, texts, rng):
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(j, ensure_ascii=False, indent=1) + "\n"
    (folder / "tokenizer.json").write_text(text, encoding="utf-8")
    tok = Tokenizer.from_str(text)
    assert tok.to_str() == Tokenizer.from_str(tok.to_str()).to_str()

    kept, composed = [], 0
    for t in texts:
        if tok.normalizer is not None and tok.normalizer.normalize_str(t) != t:
            t = tok.normalizer.normalize_str(t)  # the C++ tokenizer takes NFC text for an NFC tokenizer: the
            composed += 1                        # library's own NFC of the line (a fixed point of it) is the case
        kept.append(t)
    with open(folder / "cases.txt", "w", encoding="utf-8", newline="\n") as f:
        for t in kept:
            rec = {"text": t, "ids": tok.encode(t, add_special_tokens=True).ids}
            plain = tok.encode(t, add_special_tokens=False).ids
            if plain != rec["ids"]:
                rec["ids_no_special"] = plain
            f.write(dumps(rec) + "\n")

    # decode: random id lists, biased to single high bytes (invalid UTF-8), specials and unknown ids
    vocab = tok.get_vocab(with_added_tokens=True)
    id_to_tok = {i: s for s, i in vocab.items()}
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    high = [vocab[bytes_to_unicode()[b]] for b in range(0x80, 0x100) if bytes_to_unicode()[b] in vocab]
    top = max(vocab.values())
    added_ids = sorted(tok.get_added_tokens_decoder())

    def token_bytes(s):
        if all(c in char_to_byte for c in s):
            return bytes(char_to_byte[c] for c in s)
        return s.encode()

    with open(folder / "decode.txt", "w", encoding="utf-8", newline="\n") as f:
        for k in range(300):
            ids = []
            for _ in range(rng.randrange(0, 12) if k else 0):
                r = rng.random()
                ids.append(rng.choice(high) if r < 0.35 else rng.choice(added_ids) if r < 0.45
                           else rng.randrange(top + 1, top + 50) if r < 0.5 else rng.randrange(0, top + 1))
            raw = b"".join(token_bytes(id_to_tok[i]) for i in ids if i in id_to_tok)
            raw_skip = b"".join(token_bytes(id_to_tok[i]) for i in ids if i in id_to_tok
                                and id_to_tok[i] not in specials)
            text = tok.decode(ids, skip_special_tokens=False)
            assert text == raw.decode("utf-8", errors="replace"), (ids, text, raw)
            f.write(dumps({"ids": ids, "hex": raw.hex(), "hex_skip": raw_skip.hex(), "text": text,
                           "text_skip": tok.decode(ids, skip_special_tokens=True)}) + "\n")

    long = {}
    for key, alphabet in (("ascii", LONG_ASCII), ("mixed", LONG_MIXED)):
        ids = tok.encode(lcg_text(100_000, alphabet), add_special_tokens=True).ids
        long[key] = {"n": len(ids), "fnv1a64": f"{fnv1a64(ids):016x}", "head": ids[:16]}
    (folder / "long.json").write_text(dumps(long) + "\n", encoding="utf-8")
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    print(f"{name}: {len(kept)} cases ({composed} lines NFC-composed), vocab {tok.get_vocab_size()}, {sizes}")


def main():
    rng = random.Random(20260701)
    base = heldout_lines(rng)
    gpt2, gpt2_specials = make_gpt2()
    llama3, llama3_specials = make_llama3()
    qwen2, qwen2_specials = make_qwen2()
    options, options_specials, options_extra = make_options(gpt2)
    write("gpt2", gpt2, base + special_lines(gpt2_specials), rng)
    write("llama3", llama3, base + special_lines(llama3_specials), rng)
    write("qwen2", qwen2, base + special_lines(qwen2_specials), rng)
    write("options", options, base[::3] + special_lines(options_specials) + options_extra, rng)
    write_splits()
    write_fuzz_seeds()


def write_splits():
    """splits.txt: the library's ids through a merge-free tokenizer (id = byte value) whose pre-tokenizer is
    Sequence[P, ByteLevel(add_prefix_space=true, use_regex=false)], for pre-tokenizers P covering every Split
    behaviour, invert, empty matches and both Digits modes: the prefix space that ByteLevel puts before each
    piece shows where P split. One JSON object per line: {"pre_tokenizer": P, "text": str, "ids": [...]}."""
    table = bytes_to_unicode()
    patterns = [{"Regex": r} for r in ["x*", "", "(?=b)", "a|", r"\b", r"\s+", "[,;]", r"\p{N}", "-"]]
    patterns += [{"String": t} for t in ["-", "::", "x"]]
    pres = [{"type": "Split", "pattern": pat, "behavior": beh, "invert": inv} for pat in patterns
            for beh in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]
            for inv in [False, True]]
    pres += [{"type": "Digits", "individual_digits": d} for d in [False, True]]
    texts = ["abxxcxb d", "the-final--countdown", "a,b;;c ,d", "12a34 5", "", "  ", "h\u00e9llo w\u00f6rld \u00f1",
             "x", "bxb", "::a::::b:", "\u0663\u0664x\u00bd 7", "  spaced  out  "]
    with open(OUT / "splits.txt", "w", encoding="utf-8", newline="\n") as f:
        for pre in pres:
            j = {"version": "1.0", "added_tokens": [], "normalizer": None,
                 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [pre, byte_level_pre(False, True)]},
                 "post_processor": None,
                 "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
                 "model": {"type": "BPE", "vocab": {table[b]: b for b in range(256)}, "merges": []}}
            tok = Tokenizer.from_str(json.dumps(j))
            for t in texts:
                f.write(dumps({"pre_tokenizer": pre, "text": t, "ids": tok.encode(t).ids}) + "\n")


def write_fuzz_seeds():
    """Seeds of tests/fuzz/fuzz_tokenizer: the four layouts with SEED_VOCAB-token vocabularies (llama3 with 4
    extra words and 3 special tokens, options with 4 added tokens and a "[BOS] $A" template), and the 256 byte chars alone (no
    merges), each checked to load in the library and to be under 4096 bytes."""
    FUZZ.mkdir(parents=True, exist_ok=True)
    gpt2 = make_gpt2(SEED_VOCAB)[0]
    table = bytes_to_unicode()
    minimal = {"version": "1.0", "added_tokens": [], "normalizer": None,
               "pre_tokenizer": byte_level_pre(True), "post_processor": None,
               "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
               "model": {"type": "BPE", "vocab": {table[b]: b for b in range(256)}, "merges": []}}
    options = make_options(gpt2)[0]
    n = len(options["model"]["vocab"])
    options["added_tokens"] = [added(n, "[BOS]"), added(n + 1, "<mask>", lstrip=True, single_word=True),
                               added(n + 2, "[R]", rstrip=True), added(n + 3, "<ma", special=False)]
    options["post_processor"] = template(["[BOS]"], [], {"[BOS]": n})
    seeds = {"gpt2": gpt2, "llama3": make_llama3(SEED_VOCAB, 4, 3)[0], "qwen2": make_qwen2(SEED_VOCAB)[0],
             "options": options, "minimal": minimal}
    for name, j in seeds.items():
        text = dumps(j) + "\n"
        Tokenizer.from_str(text)
        assert len(text.encode()) < 4096, (name, len(text.encode()))
        (FUZZ / f"{name}.json").write_text(text, encoding="utf-8")
    print("fuzz seeds:", {p.name: p.stat().st_size for p in sorted(FUZZ.iterdir())})


if __name__ == "__main__":
    main()
