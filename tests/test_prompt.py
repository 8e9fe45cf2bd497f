import pytest

from captioning.prompt import DEFAULT_TEMPLATE, FALLBACK_SUBJECT, build_prompt, subject_of, with_colour


@pytest.mark.parametrize("caption, subject", [
    ("a drawing of a cat", "a cat"),
    ("a black and white drawing of a cat", "a cat"),
    ("A Black-and-White Sketch of a Dog.", "a dog"),
    ("a sketch of a house on a white background", "a house"),
    ("there is a black and white photo of a dog", "a dog"),
    ("a pencil drawing of a horse", "a horse"),
    ("an illustration of an apple", "an apple"),
    ("a cat drawn in pencil", "a cat"),
    ("a simple line drawing of a car", "a car"),
    ("doodle of a star", "a star"),
    ("a close up of a drawing of a shoe", "a shoe"),
    ("arafed drawing of a chair", "a chair"),
    ("a drawing of a cat in black and white", "a cat"),
    ("a cartoon of a fish", "a fish"),
    ("a black and white image of a clock on a wall", "a clock on a wall"),
    ("an image of a tree", "a tree"),
    ("two birds sitting on a branch", "two birds sitting on a branch"),
    ("cup", "a cup"),
    ("umbrella", "an umbrella"),
    ("a hand drawn doodle of a bicycle on paper", "a bicycle"),
    # The seed's fine-tuned captioner answers with the whole prompt: its subject is kept.
    ("Convert a bicycle into a high-resolution color image with a white background", "a bicycle"),
    ("convert an airplane into a high-resolution color image with a white background", "an airplane"),
])
def test_subject_is_the_thing_drawn(caption, subject):
    assert subject_of(caption) == subject


@pytest.mark.parametrize("caption", ["a drawing", "black and white", "a sketch", "", "  .  ",
                                     "a black and white drawing"])
def test_caption_without_subject_falls_back(caption):
    assert subject_of(caption) == FALLBACK_SUBJECT


def test_prompt_fills_the_seed_template():
    assert build_prompt("a drawing of a cat") == (
        "Convert a cat into a high-resolution color image with a white background")
    assert build_prompt("a drawing of a cat", "a photo of {subject}, 4k") == "a photo of a cat, 4k"
    assert "{subject}" in DEFAULT_TEMPLATE


def test_template_without_placeholder_is_refused():
    with pytest.raises(ValueError):
        build_prompt("a cat", "a photo")


@pytest.mark.parametrize("subject, colour, expected", [
    ("a cat", "red", "a red cat"),
    ("an apple", "red", "a red apple"),          # the article follows the new first word
    ("an umbrella", "green", "a green umbrella"),
    ("a big apple", "red", "a big red apple"),    # size before colour
    ("a clock on a wall", "green", "a green clock on a wall"),
    ("two birds sitting on a branch", "red", "two red birds sitting on a branch"),
    ("the moon", "red", "the red moon"),
    ("3 cats", "green", "3 green cats"),
    ("a teddy bear", "red", "a red teddy bear"),
    (FALLBACK_SUBJECT, "red", "a red object"),
    ("a red apple", "red", "a red apple"),        # no double colour
    ("a green frog", "red", "a green frog"),      # the caption's own colour wins
    ("a cat on a red mat", "red", "a cat on a red mat"),
    ("a cat on a mat", "green", "a green cat on a mat"),
    ("a cat", None, "a cat"),
    ("an apple", "", "an apple"),
])
def test_colour_goes_before_the_noun(subject, colour, expected):
    assert with_colour(subject, colour) == expected


def test_prompt_with_a_pen_colour():
    assert build_prompt("a black and white drawing of an apple", colour="red") == (
        "Convert a red apple into a high-resolution color image with a white background")
    assert build_prompt("a drawing of an apple", colour=None) == (
        "Convert an apple into a high-resolution color image with a white background")
    assert build_prompt("a sketch of a frog", "a photo of {subject}", "green") == "a photo of a green frog"
    # The seed's fine-tuned captioner may name the colour itself: it is not said twice.
    seed = "Convert a red apple into a high-resolution color image with a white background"
    assert build_prompt(seed, colour="red") == seed
