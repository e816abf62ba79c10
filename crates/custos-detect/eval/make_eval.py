#!/usr/bin/env python3
"""Labelled PII sentences for custos-detect's evaluation API, independent of gen_data.py.

Writes eval/dev.jsonl (tuning) and eval/heldout.jsonl (measured once, never tuned on). The two
sets use DIFFERENT sentence templates and DIFFERENT seeds; both draw values from Faker's own
locale providers (names, street addresses, phone formats, IBANs), so the shapes are Faker's,
not ours. One JSON object per line:

    {"text": "...", "spans": [{"start": 3, "end": 17, "label": "PHONE_NUMBER"}]}

Offsets are Python str (Unicode code point) offsets, end exclusive, like Presidio.

Usage: make_eval.py [--out DIR]     (pinned versions: eval/requirements.txt)
"""
import argparse
import json
import os
import random

from faker import Faker

# Locales whose names and addresses are written in Latin script (the detector's scope).
LATIN = ["en_US", "en_GB", "en_AU", "en_CA", "en_IE", "en_NZ", "fr_FR", "fr_CH", "de_DE",
         "de_AT", "de_CH", "nl_NL", "nl_BE", "es_ES", "es_MX", "it_IT", "pt_BR", "pt_PT",
         "pl_PL", "sv_SE", "da_DK", "no_NO", "fi_FI", "cs_CZ", "en_IN"]
# Phone formats come from these too (22+ countries).
PHONE_LOCALES = LATIN + ["ja_JP", "ru_RU", "ko_KR", "zh_CN"]
IBAN_LOCALES = ["de_DE", "en_GB", "fr_FR", "es_ES", "nl_NL", "it_IT", "de_AT", "de_CH",
                "nl_BE", "pl_PL", "pt_PT", "fi_FI", "da_DK", "no_NO", "sv_SE", "cs_CZ"]
# Faker card types; UnionPay, Mir and RuPay are added by `extra_card`.
CARD_TYPES = ["visa13", "visa16", "visa19", "mastercard", "amex", "discover", "diners",
              "jcb15", "jcb16", "maestro"]


def luhn_complete(prefix, length, rnd):
    """A Luhn-valid number of `length` digits starting with `prefix`."""
    digits = [int(c) for c in prefix]
    while len(digits) < length - 1:
        digits.append(rnd.randrange(10))
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    digits.append((10 - total % 10) % 10)
    return "".join(map(str, digits))


def extra_card(rnd):
    kind = rnd.choice(["unionpay", "mir", "rupay", "mc2"])
    if kind == "unionpay":
        return luhn_complete("62" + str(rnd.randrange(10, 99)), rnd.choice([16, 17, 18, 19]), rnd)
    if kind == "mir":
        return luhn_complete(str(rnd.randrange(2200, 2205)), 16, rnd)
    if kind == "rupay":
        return luhn_complete(rnd.choice(["60", "65", "81", "82", "508"]), 16, rnd)
    return luhn_complete(str(rnd.randrange(2221, 2721)), 16, rnd)


def group_card(num, rnd):
    style = rnd.random()
    if style < 0.45:
        return num
    sep = " " if style < 0.8 else "-"
    if len(num) == 15 and num[:2] in ("34", "37"):
        return sep.join([num[:4], num[4:10], num[10:]])
    return sep.join(num[i:i + 4] for i in range(0, len(num), 4))


class Gen:
    """Value generators over seeded Faker instances."""

    def __init__(self, seed):
        self.rnd = random.Random(seed)
        self.fakers = {}
        for i, loc in enumerate(sorted(set(PHONE_LOCALES))):
            f = Faker(loc)
            f.seed_instance(seed * 100 + i)
            self.fakers[loc] = f

    def f(self, locales):
        return self.fakers[self.rnd.choice(locales)]

    def PERSON(self):
        f = self.f(LATIN)
        r = self.rnd.random()
        if r < 0.55:
            return f.name()
        if r < 0.85:
            return f"{f.first_name()} {f.last_name()}"
        return f.last_name() if self.rnd.random() < 0.3 else f.first_name() + " " + f.last_name()

    def STREET_ADDRESS(self):
        f = self.f(LATIN)
        r = self.rnd.random()
        if r < 0.5:
            return f.street_address()
        return ", ".join(x.strip() for x in f.address().split("\n") if x.strip())

    def PHONE_NUMBER(self):
        return self.f(PHONE_LOCALES).phone_number()

    def EMAIL_ADDRESS(self):
        f = self.f(LATIN)
        return self.rnd.choice([f.email, f.free_email, f.company_email, f.ascii_email])()

    def CREDIT_CARD(self):
        if self.rnd.random() < 0.25:
            num = extra_card(self.rnd)
        else:
            num = self.fakers["en_US"].credit_card_number(card_type=self.rnd.choice(CARD_TYPES))
        return group_card(num, self.rnd)

    def US_SSN(self):
        s = self.fakers["en_US"].ssn()
        r = self.rnd.random()
        return s if r < 0.7 else (s.replace("-", " ") if r < 0.85 else s.replace("-", ""))

    def IBAN_CODE(self):
        iban = self.f(IBAN_LOCALES).iban()
        if self.rnd.random() < 0.5:
            return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban

    def IP_ADDRESS(self):
        f = self.fakers["en_US"]
        return self.rnd.choice([f.ipv4, f.ipv4_public, f.ipv4_private, f.ipv6])()

    # Distractors: never labelled.
    def DATE(self):
        f = self.fakers[self.rnd.choice(LATIN)]
        return self.rnd.choice([f.date, lambda: f.date(pattern="%d/%m/%Y"),
                                lambda: f.date(pattern="%m/%d/%Y"),
                                lambda: f.date(pattern="%d.%m.%Y"),
                                lambda: f.date(pattern="%B %d, %Y")])()

    def ORDER(self):
        r = self.rnd
        return r.choice([str(r.randrange(10**5, 10**11)), f"{r.randrange(100, 999)}-{r.randrange(10**6, 10**7)}",
                         f"{r.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{r.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}-{r.randrange(10**4, 10**8)}",
                         self.fakers["en_US"].ean13()])

    def VERSION(self):
        r = self.rnd
        return r.choice([f"{r.randrange(0, 20)}.{r.randrange(0, 30)}.{r.randrange(0, 200)}",
                         f"v{r.randrange(1, 12)}.{r.randrange(0, 10)}",
                         f"{r.randrange(1, 5)}.{r.randrange(0, 9)}.{r.randrange(0, 9)}.{r.randrange(1000, 9999)}"])

    def AMOUNT(self):
        r = self.rnd
        v = r.randrange(100, 10**7) / 100
        return r.choice([f"${v:,.2f}", f"€{v:.2f}", f"{v:,.2f} EUR", f"£{v:,.0f}", f"{v:.2f} USD"])

    def TIME(self):
        return self.fakers["en_US"].time(pattern=self.rnd.choice(["%H:%M", "%I:%M %p", "%H:%M:%S"]))

    def COMPANY(self):
        return self.f(LATIN).company()

    def CITY(self):
        return self.f(LATIN).city()

    def WORDS(self):
        return self.fakers["en_US"].sentence(nb_words=self.rnd.randrange(4, 10)).rstrip(".")


LABELS = {"PERSON", "STREET_ADDRESS", "PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD",
          "US_SSN", "IBAN_CODE", "IP_ADDRESS"}

# Tuning templates: support desk and CRM notes.
DEV_TEMPLATES = [
    "Hi, this is {PERSON}. Please call me back on {PHONE_NUMBER} before {TIME}.",
    "Customer {PERSON} ({EMAIL_ADDRESS}) reported order {ORDER} missing; phone {PHONE_NUMBER}.",
    "Ticket {ORDER}: {PERSON} can't log in from {IP_ADDRESS} since {DATE}.",
    "Ship to: {PERSON}, {STREET_ADDRESS}. Contact: {PHONE_NUMBER}",
    "Refund {AMOUNT} to card {CREDIT_CARD} (cardholder {PERSON}).",
    "Wire transfer of {AMOUNT} to IBAN {IBAN_CODE}, beneficiary {PERSON}.",
    "SSN {US_SSN} on file for {PERSON}; DOB {DATE}.",
    "Name: {PERSON}\nAddress: {STREET_ADDRESS}\nPhone: {PHONE_NUMBER}\nEmail: {EMAIL_ADDRESS}",
    "Dear {PERSON},\n\nyour parcel {ORDER} will be delivered to {STREET_ADDRESS} on {DATE}.",
    "Upgraded the app to {VERSION}; {PERSON} still sees the crash. Mobile: {PHONE_NUMBER}",
    "[{TIME}] {PERSON}: my new number is {PHONE_NUMBER}",
    "[{TIME}] support: thanks, noted. Anything else? [{TIME}] {PERSON}: no",
    "Invoice {ORDER} dated {DATE} for {AMOUNT}, paid by {CREDIT_CARD}.",
    "Login alert: new sign-in for {EMAIL_ADDRESS} from {IP_ADDRESS} at {TIME}.",
    "{PERSON} moved to {STREET_ADDRESS}; update the CRM before {DATE}.",
    "Please reach {PERSON} at {PHONE_NUMBER} or {PHONE_NUMBER}.",
    "Tel. {PHONE_NUMBER} / Fax {PHONE_NUMBER}",
    "{WORDS}. Order {ORDER} was {AMOUNT}.",
    "{WORDS} on {DATE}, build {VERSION}.",
    "Account holder: {PERSON}, IBAN: {IBAN_CODE}, ref {ORDER}.",
    "Card ending in the number {CREDIT_CARD} was declined for {PERSON} at {COMPANY}.",
    "Employee {PERSON} (SSN {US_SSN}) starts at {COMPANY} on {DATE}.",
    "Visitor {PERSON} from {CITY} left a message: call {PHONE_NUMBER}.",
    "Kind regards,\n{PERSON}\n{COMPANY}\n{STREET_ADDRESS}\n{PHONE_NUMBER}",
    "Server {IP_ADDRESS} rejected the request of {EMAIL_ADDRESS} (case {ORDER}).",
    "Delivery address updated to {STREET_ADDRESS} by {PERSON}.",
    "Meeting with {PERSON} and {PERSON} on {DATE} at {TIME}.",
    "{WORDS}.",
]

# Held-out templates: forms, letters, chats and logs worded differently from the dev set.
HELDOUT_TEMPLATES = [
    "Hello! I'm {PERSON} and you can text me at {PHONE_NUMBER} anytime.",
    "From: {PERSON} <{EMAIL_ADDRESS}>\nSubject: Re: order {ORDER}\n\nStill waiting since {DATE}.",
    "Applicant: {PERSON} | Phone number: {PHONE_NUMBER} | Residence: {STREET_ADDRESS}",
    "Our records show {PERSON} living at {STREET_ADDRESS} since {DATE}.",
    "Please charge {AMOUNT} to my {CREDIT_CARD}, thanks, {PERSON}",
    "Payment method: credit card {CREDIT_CARD}; billing address {STREET_ADDRESS}.",
    "Bank details for the payout: {IBAN_CODE} (account name {PERSON}).",
    "Social security number: {US_SSN}. Applicant {PERSON}, born {DATE}.",
    "user={EMAIL_ADDRESS} ip={IP_ADDRESS} action=login ts={TIME} version={VERSION}",
    "Firewall blocked {IP_ADDRESS}; attacker reused the account of {PERSON}.",
    "{PERSON} wrote: \"ring me on {PHONE_NUMBER} if the courier is late\"",
    "Contact details - {PERSON}, {PHONE_NUMBER}, {EMAIL_ADDRESS}",
    "Reservation {ORDER} for {PERSON}, total {AMOUNT}, arriving {DATE}.",
    "Return label: {PERSON}\n{STREET_ADDRESS}",
    "To whom it may concern, I, {PERSON}, authorise {COMPANY} to debit {IBAN_CODE}.",
    "My cell is {PHONE_NUMBER}, office line {PHONE_NUMBER}.",
    "Release {VERSION} fixed bug {ORDER} reported on {DATE}.",
    "Patient {PERSON}, emergency contact {PERSON} ({PHONE_NUMBER}).",
    "The package for {PERSON} should go to {STREET_ADDRESS}, not to {CITY}.",
    "SSN: {US_SSN} | Name: {PERSON} | Phone: {PHONE_NUMBER}",
    "Card {CREDIT_CARD} expired; {PERSON} asked us to use {CREDIT_CARD} instead.",
    "Quote {ORDER}: {AMOUNT} incl. VAT, valid until {DATE}.",
    "Signed, {PERSON}, {DATE}",
    "{COMPANY} headquarters: {STREET_ADDRESS}. Switchboard {PHONE_NUMBER}.",
    "Assigned to {PERSON}. Host {IP_ADDRESS} unreachable after the {VERSION} rollout.",
    "{WORDS}, see ticket {ORDER} ({AMOUNT}).",
    "Best,\n{PERSON}\nPhone: {PHONE_NUMBER}",
    "{WORDS}!",
]


def render(gen, template):
    text, spans, i = "", [], 0
    while i < len(template):
        j = template.find("{", i)
        if j < 0:
            text += template[i:]
            break
        text += template[i:j]
        k = template.index("}", j)
        name = template[j + 1:k]
        value = getattr(gen, name)()
        if name in LABELS:
            spans.append({"start": len(text), "end": len(text) + len(value), "label": name})
        text += value
        i = k + 1
    return {"text": text, "spans": spans}


def write(path, seed, templates, count):
    gen = Gen(seed)
    with open(path, "w", encoding="utf-8") as out:
        for n in range(count):
            rec = render(gen, templates[n % len(templates)] if n < len(templates)
                         else gen.rnd.choice(templates))
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    write(os.path.join(args.out, "dev.jsonl"), 1907, DEV_TEMPLATES, 1500)
    write(os.path.join(args.out, "heldout.jsonl"), 73051, HELDOUT_TEMPLATES, 1500)


if __name__ == "__main__":
    main()
