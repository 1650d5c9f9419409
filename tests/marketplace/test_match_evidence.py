"""Result cards show the 「语义最接近」 sentence pair of a semantic match, escaped."""

from __future__ import annotations

from types import SimpleNamespace

from matching import Hit
from matching.engine import Evidence


def render_card(app, hit: Hit) -> str:
    entry = SimpleNamespace(
        id=7, kind="product", name="居家安全监测终端", region_label="南昌市", maturity_label="试点应用",
        categories=["社会保障"], tags=[],
    )
    result = SimpleNamespace(entry=entry, hit=hit, organization="某科技公司")
    with app.test_request_context():
        macros = app.jinja_env.get_template("matching/_macros.html").module
        return str(macros.result_card(1, result))


def test_a_semantic_hit_shows_the_closest_sentences(app):
    hit = Hit(7, "product", 0.5, 0.8, 0.0, 0.2, reasons=["语义相似度高"],
              evidence=Evidence("独居老人在家跌倒<无人>知晓。", "雷达感知人员倒地后自动报警。", 0.8123))
    html = render_card(app, hit)
    assert "语义最接近：「独居老人在家跌倒&lt;无人&gt;知晓。」↔「雷达感知人员倒地后自动报警。」" in html
    assert "0.81" in html


def test_a_lexical_hit_has_no_sentence_pair(app):
    html = render_card(app, Hit(7, "product", 0.9, 0.3, 1.0, 0.2, matched_terms=["跌倒"]))
    assert "语义最接近" not in html and "data-evidence" not in html
