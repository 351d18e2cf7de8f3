import pytest

from ml.prompts import (
    BACKGROUNDS,
    COLORS,
    COUNTS,
    OBJECTS,
    UNSEEN_OBJECTS,
    WORLD_VOCABULARY,
    PromptSetConfig,
    all_prompts,
    generate_prompt_set,
    highlight_spans,
    indefinite_article,
    make_prompt,
    parse_prompt,
    perturb,
    pluralize,
    prompts_from_texts,
    render,
)


@pytest.mark.parametrize(
    ("attrs", "text"),
    [
        (("dog", 2, None, None), "Two dogs"),
        (("dog", None, "green", None), "A green colored dog"),
        (("dog", None, None, "forest"), "A dog in the forest"),
        (("dog", 2, "blue", "forest"), "Two blue dogs in the forest"),
        (("orange", None, None, "moon"), "An orange on the moon"),
        (("apple", None, None, "table"), "An apple on the table"),
        (("airplane", None, None, "San Francisco"), "An airplane in San Francisco"),
        (("box", 3, None, None), "Three boxes"),
        (("orange", 5, None, None), "Five oranges"),
        (("wolf", 4, "white", "city"), "Four white wolves in the city"),
        (("cat", 1, None, None), "One cat"),
        (("apple", None, "red", "desert"), "A red apple in the desert"),
    ],
)
def test_render_english(attrs, text):
    assert render(*attrs) == text


def test_plural_and_article_rules():
    assert [pluralize(w) for w in ["cherry", "knife", "bus", "dish", "toy", "mouse", "glass"]] == [
        "cherries",
        "knives",
        "buses",
        "dishes",
        "toys",
        "mice",
        "glasses",
    ]
    assert [indefinite_article(w) for w in ["orange", "umbrella", "unicorn", "hour", "cake"]] == [
        "an",
        "an",
        "a",
        "an",
        "a",
    ]


def test_every_template_prompt_parses_back_to_its_attributes():
    prompts = [p for ps in all_prompts().values() for p in ps]
    assert len({p.text for p in prompts}) == len(prompts)
    for p in prompts:
        assert parse_prompt(p.text) == p


def test_attributes_category_and_split():
    p = parse_prompt("Two blue wolves in the forest")
    assert (p.category, p.object, p.count, p.color, p.background, p.split) == (
        "combination",
        "wolf",
        2,
        "blue",
        "forest",
        "unseen",
    )
    assert parse_prompt("A green colored dog").category == "color"
    assert parse_prompt("three cats").category == "count"
    assert parse_prompt("a rose on the moon").split == "unseen"
    assert parse_prompt("A dog in the forest").split == "seen"


@pytest.mark.parametrize("text", ["Two dog", "A dogs", "A dog", "Two spaceships", "hello world", ""])
def test_parser_rejects_what_is_not_a_probe(text):
    assert parse_prompt(text) is None


def test_prompts_from_texts_names_bad_lines():
    with pytest.raises(ValueError, match="not in the template language"):
        prompts_from_texts(["Two dogs", "a spaceship"])


def test_highlight_spans_point_at_the_words():
    p = parse_prompt("Two blue dogs in San Francisco")
    assert [(p.text[s:e], a) for s, e, a in highlight_spans(p)] == [
        ("Two", "count"),
        ("blue", "color"),
        ("dogs", "object"),
        ("San Francisco", "background"),
    ]


def test_prompt_set_sizes_and_determinism():
    full = generate_prompt_set(PromptSetConfig())
    assert len(full) == 2774
    singles = (len(OBJECTS) - len(UNSEEN_OBJECTS)) * (len(COUNTS) + len(COLORS) + len(BACKGROUNDS))
    assert sum(p.category != "combination" for p in full) == singles
    assert {p.category for p in full} == {"count", "color", "background", "combination"}
    small = generate_prompt_set(PromptSetConfig(size=100, seed=3))
    assert len(small) == 100 and len({p.text for p in small}) == 100
    assert small == generate_prompt_set(PromptSetConfig(size=100, seed=3))
    assert small != generate_prompt_set(PromptSetConfig(size=100, seed=4))
    seen_only = generate_prompt_set(PromptSetConfig(size=None, splits=("seen",), categories=("count",)))
    assert len(seen_only) == 20 * 6 and all(p.split == "seen" for p in seen_only)


# What ml.world.loop.choose_prompts returns for the round's calls (full and reduced round, seed 0):
# the world loop is tuned against these prompts, so a change to the set builder must not move them.
WORLD_CHOICES = {
    ("seen", 48, 0): "1d20444bce445943",
    ("unseen", 24, 1): "6174c9c666936473",
    ("seen", 30, 2): "98d08f6fd5954dec",
    ("unseen", 30, 3): "ea90954731e78752",
    ("seen", 32, 0): "3a86e0419bc6643c",
    ("unseen", 16, 1): "b95c19fe4a326c3e",
    ("seen", 20, 2): "5ddfb3d5aa5808c4",
    ("unseen", 20, 3): "e73777e02b3699c5",
}


@pytest.mark.parametrize("call", sorted(WORLD_CHOICES))
def test_world_loop_prompt_choice_is_pinned(call):
    import hashlib

    from ml.world.loop import choose_prompts

    texts = "\n".join(p.text for p in choose_prompts(*call))
    assert hashlib.sha256(texts.encode()).hexdigest()[:16] == WORLD_CHOICES[call]


def test_training_sets_hold_out_the_unseen_objects_and_their_perturbations_never_add_them():
    for vocabulary in (PromptSetConfig().vocabulary, WORLD_VOCABULARY):
        for size in (40, 120, 2774, None):
            train = generate_prompt_set(PromptSetConfig(size=size, vocabulary=vocabulary))
            assert train and all(p.split == "seen" and p.object not in vocabulary.unseen_objects for p in train)
        negatives = [q for p in train for q in perturb(p, 9, seed=0, vocabulary=vocabulary)]
        assert negatives and not {q.object for q in negatives} & set(vocabulary.unseen_objects)
        assert all(q.split == "seen" for q in negatives)
    # an unseen prompt keeps its own object in count/colour/background swaps, but gains no other unseen one
    rose = parse_prompt("Six purple roses on the table")
    assert {q.object for q in perturb(rose, 30)} - {"rose"} <= set(OBJECTS) - set(UNSEEN_OBJECTS)


def test_a_small_evaluation_set_is_balanced_across_categories_and_splits():
    from collections import Counter

    ev = generate_prompt_set(PromptSetConfig(size=120, seed=0, splits=("seen", "unseen")))
    counts = Counter((p.split, p.category) for p in ev)
    assert counts == {(s, c): 15 for s in ("seen", "unseen") for c in ("count", "color", "background", "combination")}
    odd = generate_prompt_set(PromptSetConfig(size=41, seed=0, splits=("seen", "unseen"), vocabulary=WORLD_VOCABULARY))
    assert len(odd) == 41 and Counter(p.split for p in odd) == {"seen": 21, "unseen": 20}
    # pooled, as sets were drawn before: the splits in whatever share the sampling gives
    pooled = generate_prompt_set(PromptSetConfig(size=120, seed=0, splits=("seen", "unseen"), balance_splits=False))
    assert Counter(p.split for p in pooled) == {"seen": 96, "unseen": 24}
    # a split with too few prompts gives its share to the other
    few = generate_prompt_set(PromptSetConfig(size=20, splits=("seen", "unseen"), categories=("count",),
                                              vocabulary=WORLD_VOCABULARY))
    assert Counter(p.split for p in few) == {"unseen": 4, "seen": 16}


def test_small_prompt_sets_are_balanced_across_categories():
    from collections import Counter

    from ml.prompts import WORLD_VOCABULARY

    for vocabulary in (PromptSetConfig().vocabulary, WORLD_VOCABULARY):
        small = generate_prompt_set(PromptSetConfig(size=40, seed=1, vocabulary=vocabulary))
        assert Counter(p.category for p in small) == {"count": 10, "color": 10, "background": 10, "combination": 10}
    # a category that runs out leaves its turns to the others
    unseen = generate_prompt_set(PromptSetConfig(size=40, splits=("unseen",), vocabulary=WORLD_VOCABULARY))
    counts = Counter(p.category for p in unseen)
    assert len(unseen) == 40 and counts["count"] == 4 and counts["combination"] > 10


def _attrs(p):
    return (p.object, p.count, p.color, p.background)


@pytest.mark.parametrize(
    "text",
    ["Two dogs", "A green colored cup", "A tree in the sea", "Six purple roses on the table", "One cat"],
)
def test_perturbations_differ_are_distinct_and_deterministic(text):
    p = parse_prompt(text)
    negs = perturb(p, 9, seed=1)
    assert len(negs) == 9
    assert len({q.text for q in negs}) == 9
    assert all(q.text != p.text and _attrs(q) != _attrs(p) for q in negs)
    assert all(parse_prompt(q.text) == q for q in negs)
    assert [q.text for q in perturb(p, 9, seed=1)] == [q.text for q in negs]
    assert [q.text for q in perturb(p, 9, seed=2)] != [q.text for q in negs]


def test_perturbation_falls_back_to_double_swaps_when_single_swaps_run_out():
    p = make_prompt("dog", count=2)
    negs = perturb(p, 40, seed=0)  # 5 count swaps + 24 object swaps < 40
    assert len({q.text for q in negs}) == 40 and p.text not in {q.text for q in negs}
    with pytest.raises(ValueError):
        perturb(p, 10_000)
