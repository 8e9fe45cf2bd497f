"""From a caption to the generator's prompt.

Stock BLIP says "a black and white drawing of a cat", which makes the generator draw a
drawing. The seed fine-tuned BLIP to answer "Convert a cat into a high-resolution color image
with a white background" instead. Here any caption is reduced to its subject ("a cat") and put
into a template, so the stock and the fine-tuned captioners both give a photo-like prompt.

The captioner and the generator see only black strokes; the pen's colour, when the drawing has
one (generation.preprocess.stroke_colour), goes into the prompt instead: "a red apple".
"""
from __future__ import annotations

import re

DEFAULT_TEMPLATE = "Convert {subject} into a high-resolution color image with a white background"
FALLBACK_SUBJECT = "an object"

_MEDIUM = (r"drawings?|sketch(?:es)?|doodles?|illustrations?|outlines?|line\s*art|line\s*drawings?"
           r"|cartoons?|pictures?|images?|photo(?:graph)?s?|paintings?|renderings?|clip\s*art|icons?|scribbles?")
_STYLE = (r"black\s*(?:and|&)\s*white|black|white|simple|rough|quick|crude|hand[\s-]*drawn|pencil"
          r"|pen|ink|line|child'?s|kid'?s|cartoon|digital|small|little|close[\s-]*up|vector"
          r"|minimalist|basic|monochrome|grey|gray|outline")
_LEADING = r"^(?:there\s+is|there\s+are|this\s+is|it\s+is|it'?s|here\s+is|an?\s+image\s+of|a\s+photo\s+of)\s+"
# "a black and white drawing of", "an illustration of", "sketch of the" ...
_MEDIUM_OF = re.compile(
    rf"\b(?:(?:a|an|the)\s+)?(?:(?:{_STYLE})\s+)*(?:{_MEDIUM})\s+(?:of|showing|depicting|with)\s+", re.I)
# "... drawn in pencil", "... on a white background", "... in black and white"
_TRAILING = re.compile(
    r"\s*(?:,\s*)?\b(?:(?:drawn|sketched|done)\s+(?:in|with|on)\b.*"
    r"|(?:on|against|with|in\s+front\s+of)\s+(?:a\s+|the\s+)?(?:plain\s+|blank\s+)?(?:white|black|grey|gray)\s+"
    r"(?:background|paper|board|surface|wall)\b.*"
    r"|on\s+(?:a\s+)?(?:piece\s+of\s+)?paper\b.*"
    r"|in\s+(?:black\s*(?:and|&)\s*white|pencil|ink|pen)\b.*"
    r"|(?:drawing|sketch|doodle|illustration)s?\s*$)", re.I)
# The seed's fine-tuned answer, to take its class word back out.
_SEED_ANSWER = re.compile(r"^convert\s+(?P<subject>.+?)\s+into\s+a\b", re.I)
# What is left when the caption names no subject: "a drawing", "black and white".
_NO_SUBJECT = re.compile(rf"^(?:(?:a|an|the)\b\s*)?(?:(?:{_STYLE})\b\s*)*(?:(?:{_MEDIUM})\b)?$", re.I)
_DETERMINER = re.compile(r"^(?:a|an|the|one|two|three|four|five|some|several|many|\d+)\b", re.I)
_DETERMINERS = {"a", "an", "the", "one", "two", "three", "four", "five", "some", "several", "many"}
# Adjectives that come before a colour in English ("a big red apple"): size, age, shape, opinion.
_BEFORE_COLOUR = {"big", "small", "large", "little", "tiny", "huge", "giant", "old", "young", "new",
                  "round", "square", "tall", "long", "short", "fat", "thin", "cute", "pretty",
                  "beautiful", "ugly", "happy", "sad", "funny", "nice"}
# Where the subject's noun phrase ends: "a clock | on a wall", "two birds | sitting on a branch".
_PHRASE_END = {"on", "in", "at", "of", "with", "under", "over", "near", "by", "next", "and", "or",
               "that", "which", "who", "is", "are", "from", "to", "inside", "behind", "beside"}
_COLOUR_WORDS = {"red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black",
                 "white", "grey", "gray", "golden", "silver", "violet", "reddish", "greenish"}


def subject_of(caption: str) -> str:
    """The thing drawn, with its article: "a black and white drawing of a cat" -> "a cat"."""
    text = " ".join(caption.replace("\n", " ").split()).strip(" .,;:!")
    seed = _SEED_ANSWER.match(text)
    if seed:
        text = seed.group("subject")
    text = re.sub(_LEADING, "", text, flags=re.I)
    # Keep what follows the last "drawing of": "a sketch of a drawing of a dog" -> "a dog".
    parts = _MEDIUM_OF.split(text)
    text = parts[-1] if parts[-1].strip() else text
    text = _TRAILING.sub("", text).strip(" .,;:!-")
    if not text or _NO_SUBJECT.match(text):
        return FALLBACK_SUBJECT
    text = text.lower()
    if not _DETERMINER.match(text):
        text = ("an " if text[0] in "aeiou" else "a ") + text
    return text


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def with_colour(subject: str, colour: str | None) -> str:
    """The subject with its colour before the noun: ("an apple", "red") -> "a red apple".

    The article follows the new word; size, age and shape adjectives stay first ("a big red
    apple"); a subject that already names a colour for its noun is left as it is.
    """
    colour = (colour or "").strip().lower()
    if not colour:
        return subject
    words = subject.split()
    bare = [w.strip(".,;:!?").lower() for w in words]
    end = next((i for i, w in enumerate(bare) if i > 0 and (w in _PHRASE_END or w.endswith("ing"))),
               len(words))
    if colour in bare or _COLOUR_WORDS.intersection(bare[:end]):
        return subject  # "a red apple" stays; "a yellow banana" gets no second colour
    at = 1 if bare and (bare[0] in _DETERMINERS or bare[0].isdigit()) else 0
    while at < end - 1 and bare[at] in _BEFORE_COLOUR:
        at += 1
    words.insert(at, colour)
    if at == 1 and bare[0] in ("a", "an"):
        words[0] = _article(colour)
    return " ".join(words)


def build_prompt(caption: str, template: str = DEFAULT_TEMPLATE, colour: str | None = None) -> str:
    """The generator's prompt for a caption; `template` must contain `{subject}`.

    `colour` ("red", "green" or None) is the pen's colour, put before the subject's noun.
    """
    if "{subject}" not in template:
        raise ValueError("the prompt template must contain {subject}")
    return template.format(subject=with_colour(subject_of(caption), colour))
