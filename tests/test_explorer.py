"""The attention explorer in a real headless Chromium (Playwright, Debian's chromium).

The page is opened from a file:// URL with every network request blocked, then clicked
like a user would; what it draws is checked against the database.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from app.report.explorer import LINE_MIN, TOP_HEADS
from tests.conftest import FIXTURES, fresh_mlflow_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, _migrated_template: Path, _mlflow_template: Path):  # type: ignore[no-untyped-def]
    """Two encoders (the tiny model and its random-init twin) analysed on four sentences."""
    from app import Lab

    root = tmp_path_factory.mktemp("explorer")
    shutil.copy(_migrated_template, root / "explorer.duckdb")
    fresh_mlflow_store(root / "mlruns", _mlflow_template)
    lab = Lab(db=root / "explorer.duckdb", mlruns=root / "mlruns", cache_dir=root / "cache")
    lab.ingest_model("tiny", path=tiny_bert)
    lab.ingest_model("twin", path=tiny_bert, random_init=3)
    lab.ingest_corpus("sentences", path=FIXTURES / "sentences.conllu", format="conllu")
    for model in ("tiny", "twin"):
        lab.analyze("surface", "syntax", "examples", model=model, corpus="sentences")
    return lab


@pytest.fixture(scope="module")
def page_file(lab, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("page") / "explorer.html"
    return lab.explore("tiny", corpus="sentences", compare_with="twin", out=out, min_arcs=1)


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, page_file: Path):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    requests: list[str] = []
    # Self-contained means nothing but the file itself is ever fetched.
    context.route(re.compile(r"^(?!file:).*"), lambda route: (requests.append(route.request.url), route.abort()))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_file.as_uri())
    yield page
    assert errors == [] and requests == []
    context.close()


def example_rows(lab, model: str, example: int = 1):  # type: ignore[no-untyped-def]
    return lab.query("example_maps", model=model, corpus="sentences", example=example)


def head_rows(rows, layer: int, head: int):  # type: ignore[no-untyped-def]
    return rows[(rows["layer"] == layer) & (rows["head"] == head)]


def test_the_page_needs_no_server_and_no_cdn(page_file: Path) -> None:
    html = page_file.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)
    assert "<script src" not in html and "<link" not in html


def test_clicking_a_head_draws_its_attention_and_shows_its_metrics(lab, page) -> None:  # type: ignore[no-untyped-def]
    page.click("#panel-a td.cell[data-layer='2'][data-head='3']")
    assert page.text_content("#panel-a .head-title") == "head 2-3 of tiny"
    rows = head_rows(example_rows(lab, "tiny"), 2, 3)
    weights = [round(float(w), 3) for w in rows["weight"]]
    lines = page.locator("#panel-a svg.attention line")
    assert lines.count() == sum(w >= LINE_MIN for w in weights) > 0
    # The strongest line is drawn between the right words with the stored weight.
    strongest = rows.loc[rows["weight"].astype(float).idxmax()]
    line = page.locator(
        f"#panel-a line[data-q='{strongest.query_unit}'][data-k='{strongest.key_unit}']"
    )
    assert float(line.get_attribute("stroke-opacity")) == pytest.approx(strongest.weight, abs=1e-3)
    tokens = rows[["query_unit", "query_token"]].drop_duplicates()["query_token"].tolist()
    assert page.locator("#panel-a text.token-left").all_text_contents() == tokens
    surface = lab.query("head_surface", model="tiny", corpus="sentences")
    entropy = surface[(surface["label"] == "2-3") & (surface["metric"] == "entropy")]["value"]
    shown = page.text_content("#panel-a td[data-metric='entropy']")
    assert shown == f"{float(entropy.iloc[0]):.3f}"
    assert page.locator("#panel-a td[data-metric]").count() == surface["metric"].nunique()

    # Hovering the third word leaves only its own lines in focus.
    page.hover("#panel-a text.token-left[data-q='2']")
    own = sum(1 for q, w in zip(rows["query_unit"], weights) if q == 2 and w >= LINE_MIN)
    assert page.locator("#panel-a svg.attention.focused line.focus").count() == own > 0

    page.select_option("#view", "matrix")
    n = len(tokens)
    assert page.locator("#panel-a svg.attention rect.weight").count() == n * n


def test_a_relation_highlights_its_best_heads(lab, page) -> None:  # type: ignore[no-untyped-def]
    grid = lab.query("relation_head_grid", model="tiny", corpus="sentences", min_arcs=1)
    relation = grid["relation"].value_counts().index[0]
    page.select_option("#relation", relation)
    accuracy = {
        label: float(value)
        for label, value in zip(grid[grid["relation"] == relation]["label"],
                                grid[grid["relation"] == relation]["accuracy"])
    }  # fmt: skip
    best = page.locator("#panel-a td.cell.best")
    best_labels = {f"{c.get_attribute('data-layer')}-{c.get_attribute('data-head')}" for c in best.all()}
    # The top TOP_HEADS heads by accuracy (the page shows accuracy to 0.1), ties included.
    shown = {label: round(value, 1) for label, value in accuracy.items()}
    cut = sorted(shown.values(), reverse=True)[TOP_HEADS - 1]
    assert best_labels == {label for label, value in shown.items() if value >= cut}
    # The best head lists the relation among those it is best at, with its accuracy.
    top = max(accuracy, key=lambda label: (accuracy[label], -int(label.replace("-", ""))))
    layer, head = top.split("-")
    page.click(f"#panel-a td.cell[data-layer='{layer}'][data-head='{head}']")
    item = page.locator(f"#panel-a ul.best-at li[data-relation='{relation}']")
    assert item.get_attribute("data-rank") == "1"
    assert f"{accuracy[top]:.1f}%" in item.text_content()


def test_two_encoders_show_the_same_sentence_side_by_side(lab, page) -> None:  # type: ignore[no-untyped-def]
    page.select_option("#sentence", "1")  # the second example sentence
    expected = example_rows(lab, "twin", example=2)
    tokens = expected[["query_unit", "query_token"]].drop_duplicates()["query_token"].tolist()
    assert page.locator("#panel-b select.model").input_value() == "twin"
    assert page.locator("#panel-a text.token-left").all_text_contents() == tokens
    assert page.locator("#panel-b text.token-left").all_text_contents() == tokens
    page.click("#panel-b td.cell[data-layer='1'][data-head='2']")
    weights = [round(float(w), 3) for w in head_rows(expected, 1, 2)["weight"]]
    assert page.locator("#panel-b svg.attention line").count() == sum(w >= LINE_MIN for w in weights)
    assert page.text_content("#panel-b .head-title") == "head 1-2 of twin"
    # The twin's maps are not the trained model's: the two panels differ.
    tiny = [round(float(w), 3) for w in head_rows(example_rows(lab, "tiny", example=2), 1, 2)["weight"]]
    assert tiny != weights
