#!/usr/bin/env python3
"""Writes the word lists in data/ from Faker's locale providers (pinned in
eval/requirements.txt), so the name and street dictionaries cover the same locales the detector
is evaluated on without copying any evaluation sentence.

    given_names_intl.txt  given names of every locale below (lower case)
    surnames_intl.txt     family names (lower case; multi-word names split into their words)
    titles.txt        honorifics and academic titles (lower case, no trailing dot)
    street_words.txt  street types and prefixes in every locale (lower case, no dot): "street",
                      "rue", "calle", "via", "straße", "straat", "gatan", "ul" ...

The rule-based detectors keep the curated English lists (given_names.txt, surnames.txt,
street_suffixes.txt), which this script does not write: a Latin-script given name of any locale
("Apollo", "Rosa", "Paz") is too often a plain word for a rule that sees one cell at a time.
These larger lists are features of the learned tagger, which weighs them against context.

Usage: make_dicts.py [--out DIR]
"""
import argparse
import importlib
import os
import re
import unicodedata

LOCALES = ["en_US", "en_GB", "en_AU", "en_CA", "en_IE", "en_NZ", "en_IN", "fr_FR", "fr_CH",
           "fr_CA", "de_DE", "de_AT", "de_CH", "nl_NL", "nl_BE", "es_ES", "es_MX", "es_CO",
           "it_IT", "pt_BR", "pt_PT", "pl_PL", "sv_SE", "da_DK", "no_NO", "fi_FI", "cs_CZ",
           "sk_SK", "hu_HU", "ro_RO", "hr_HR", "sl_SI", "et_EE", "lv_LV", "lt_LT", "tr_TR",
           "id_ID", "fil_PH", "hi_IN"]

# Titles people write before names that Faker's prefix lists miss.
EXTRA_TITLES = ["mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "lord", "lady",
                "rev", "fr", "herr", "frau", "m", "mme", "mlle", "mm", "sr", "sra", "srta",
                "dña", "dna", "don", "dott", "dssa", "sig", "sigra", "ing", "avv", "arch",
                "dhr", "mevr", "mw", "hr", "fru", "pan", "pani", "sr", "snr", "jr", "shri",
                "smt", "kumari", "mag", "dipl", "univ", "capt", "col", "gen", "lt", "sgt"]
# Street words people write that are missing from the providers (UK, US and EU usage).
EXTRA_STREET = ["street", "st", "road", "rd", "avenue", "ave", "lane", "ln", "drive", "dr",
                "close", "crescent", "terrace", "gardens", "square", "place", "court", "way",
                "mews", "row", "hill", "grove", "park", "walk", "rise", "parade", "view",
                "straße", "strasse", "str", "weg", "gasse", "platz", "allee", "ring", "damm",
                "rue", "avenue", "boulevard", "bd", "bld", "chemin", "impasse", "allée", "quai",
                "place", "route", "calle", "c", "avenida", "avda", "av", "paseo", "plaza",
                "camino", "carretera", "ronda", "via", "viale", "piazza", "corso", "vicolo",
                "largo", "contrada", "rua", "travessa", "praça", "estrada", "alameda", "straat",
                "laan", "plein", "gracht", "kade", "singel", "dijk", "steeg", "ulica", "ul",
                "aleja", "al", "plac", "pl", "osiedle", "os", "gatan", "gata", "vägen", "väg",
                "gränd", "torget", "vej", "gade", "allé", "veien", "vegen", "gate", "katu",
                "tie", "kuja", "polku", "ulice", "nám", "náměstí", "třída"]

# Function words that some locale lists as a name ("The", "Will", "Do"): as a name feature
# they would make every "Mr. The ..." look like a name.
STOPWORDS = {"the", "and", "of", "to", "in", "for", "with", "on", "at", "by", "from", "as",
             "is", "it", "or", "an", "be", "if", "so", "no", "not", "but", "all", "any", "can",
             "do", "we", "you", "he", "she", "they", "his", "her", "our", "my", "me", "us",
             "this", "that", "these", "there", "then", "than", "when", "what", "who", "how",
             "why", "was", "were", "are", "has", "have", "had", "will", "would", "should",
             "could", "may", "might", "must", "shall", "yes", "per", "via", "out", "up", "off",
             "over", "under", "into", "about", "after", "before", "call", "read", "list", "man",
             "company", "version", "order", "ticket", "phone", "mobile", "email", "account",
             "customer", "invoice", "street", "road", "avenue", "address", "name", "card"}

PARTICLES = {"de", "da", "del", "do", "du", "la", "le", "van", "von", "der", "den", "di"}

WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)


def provider(kind, loc):
    try:
        return importlib.import_module(f"faker.providers.{kind}.{loc}").Provider
    except ModuleNotFoundError:
        return None


def values(p, names):
    out = []
    for n in names:
        v = getattr(p, n, None)
        if isinstance(v, dict):
            v = list(v.keys())
        if isinstance(v, (list, tuple)):
            out.extend(x for x in v if isinstance(x, str))
    return out


def latin(w):
    """Latin script only: the detector tokenises Latin-script text."""
    return all(unicodedata.name(c, "").startswith("LATIN") or c in "'’-" for c in w)


def words(entries, keep_lower=False):
    out = set()
    for e in entries:
        for w in WORD.findall(e):
            if len(w) < 2 or not latin(w):
                continue
            if not keep_lower and not w[0].isupper():
                continue
            out.add(w.lower())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "data"))
    args = ap.parse_args()
    given, last, titles, street = set(), set(), set(EXTRA_TITLES), set(EXTRA_STREET)
    for loc in LOCALES:
        p = provider("person", loc)
        if p is not None:
            given |= words(values(p, ["first_names", "first_names_male", "first_names_female",
                                      "first_names_nonbinary", "first_romanized_names"]))
            last |= words(values(p, ["last_names", "last_names_male", "last_names_female",
                                     "male_last_names", "unisex_last_names",
                                     "last_romanized_names"]))
            for t in values(p, ["prefixes", "prefixes_male", "prefixes_female",
                                "prefixes_nonbinary"]):
                for w in WORD.findall(t):
                    w = w.lower()
                    # Particles ("de", "da") and lone initials are not titles; "M." is.
                    if latin(w) and (len(w) >= 2 or w == "m") and w not in PARTICLES:
                        titles.add(w)
        a = provider("address", loc)
        if a is not None:
            for s in values(a, ["street_suffixes", "street_suffixes_long", "street_suffixes_short",
                                "street_prefixes", "street_prefixes_feminine",
                                "street_prefixes_masculine"]):
                s = s.strip().strip(".").lower()
                if s and " " not in s and latin(s.replace(".", "")):
                    street.add(s.replace(".", ""))
    # Romanised Japanese names come from ja_JP.
    ja = provider("person", "ja_JP")
    given |= words(values(ja, ["first_romanized_names"]))
    last |= words(values(ja, ["last_romanized_names"]))
    given -= STOPWORDS
    last -= STOPWORDS
    header = ("# Generated by train/make_dicts.py from Faker's locale providers; "
              "lower case, one a line.\n")
    for name, items in [("given_names_intl.txt", given), ("surnames_intl.txt", last),
                        ("titles.txt", titles), ("street_words.txt", street)]:
        with open(os.path.join(args.out, name), "w", encoding="utf-8", newline="\n") as f:
            f.write(header)
            for w in sorted(items):
                f.write(w + "\n")
        print(name, len(items))


if __name__ == "__main__":
    main()
