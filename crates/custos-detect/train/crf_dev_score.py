#!/usr/bin/env python3
"""Tuning aid: scores the CRF alone (no rules, every sentence tagged) on a labelled JSONL set,
overlap and strict P/R/F1 for PERSON and STREET_ADDRESS. Tune on eval/dev.jsonl only.

Usage: crf_dev_score.py MODEL SET.jsonl [N LABEL...]   (print N mismatches of LABEL)
"""
import json
import sys

import pycrfsuite

from train_crf import features, tokenize

LABELS = {"PER": "PERSON", "ADDR": "STREET_ADDRESS"}


def spans_of(toks, tags):
    out, cur = [], None
    for (s, e, _), t in zip(toks, tags):
        lab = t[2:] if t != "O" else None
        if lab and (t.startswith("B-") or cur is None or cur[2] != lab):
            if cur:
                out.append(cur)
            cur = [s, e, lab]
        elif lab:
            cur[1] = e
        else:
            if cur:
                out.append(cur)
            cur = None
    if cur:
        out.append(cur)
    return [(s, e, LABELS[l]) for s, e, l in out]


def main():
    tagger = pycrfsuite.Tagger()
    tagger.open(sys.argv[1])
    misses = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    stats = {k: [0, 0, 0, 0, 0] for k in LABELS.values()}  # tp_overlap_pred, pred, tp_overlap_gold, gold, strict
    shown = 0
    for line in open(sys.argv[2], encoding="utf-8"):
        rec = json.loads(line)
        text = rec["text"]
        toks = tokenize(text)
        pred = spans_of(toks, tagger.tag(features(text, toks))) if toks else []
        gold = [(s["start"], s["end"], s["label"]) for s in rec["spans"] if s["label"] in stats]
        for lab, st in stats.items():
            p = [x for x in pred if x[2] == lab]
            g = [x for x in gold if x[2] == lab]
            st[0] += sum(any(a < d and c < b for c, d, _ in g) for a, b, _ in p)
            st[1] += len(p)
            st[2] += sum(any(a < d and c < b for c, d, _ in p) for a, b, _ in g)
            st[3] += len(g)
            st[4] += sum(x in g for x in p)
            if shown < misses and set(p) != set(g) and lab in sys.argv[4:]:
                shown += 1
                print(lab, "gold", [text[a:b] for a, b, _ in g], "pred", [text[a:b] for a, b, _ in p])
    for lab, (tpp, np_, tpg, ng, strict) in stats.items():
        p = tpp / max(np_, 1)
        r = tpg / max(ng, 1)
        f = 2 * p * r / max(p + r, 1e-9)
        sp, sr = strict / max(np_, 1), strict / max(ng, 1)
        sf = 2 * sp * sr / max(sp + sr, 1e-9)
        print(f"{lab:15} overlap P {p:.3f} R {r:.3f} F1 {f:.3f} | strict F1 {sf:.3f}  (pred {np_}, gold {ng})")


if __name__ == "__main__":
    main()
